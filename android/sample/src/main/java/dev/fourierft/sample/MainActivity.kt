package dev.fourierft.sample

import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.setContent
import androidx.activity.enableEdgeToEdge
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.layout.safeDrawingPadding
import androidx.compose.foundation.rememberScrollState
import androidx.compose.foundation.selection.selectable
import androidx.compose.foundation.selection.selectableGroup
import androidx.compose.foundation.verticalScroll
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedButton
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.RadioButton
import androidx.compose.material3.Surface
import androidx.compose.material3.Text
import androidx.compose.runtime.Composable
import androidx.compose.ui.Alignment
import androidx.compose.ui.Modifier
import androidx.compose.ui.semantics.Role
import androidx.compose.ui.unit.dp
import androidx.lifecycle.viewmodel.compose.viewModel

class MainActivity : ComponentActivity() {
    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        enableEdgeToEdge()
        setContent {
            MaterialTheme {
                Surface(modifier = Modifier.fillMaxSize()) {
                    SampleScreen(viewModel())
                }
            }
        }
    }
}

@Composable
fun SampleScreen(vm: SampleViewModel) {
    Column(
        modifier = Modifier
            .fillMaxSize()
            .safeDrawingPadding()
            .padding(16.dp),
        verticalArrangement = Arrangement.spacedBy(12.dp),
    ) {
        Text("FourierFT", style = MaterialTheme.typography.headlineSmall)
        Text(vm.status, style = MaterialTheme.typography.bodySmall)

        Text("Adapter", style = MaterialTheme.typography.titleSmall)
        Column(Modifier.selectableGroup()) {
            for (option in vm.adapters) {
                Row(
                    modifier = Modifier
                        .fillMaxWidth()
                        .selectable(
                            selected = option == vm.selected,
                            enabled = !vm.generating,
                            role = Role.RadioButton,
                            onClick = { vm.selected = option },
                        )
                        .padding(vertical = 4.dp),
                    verticalAlignment = Alignment.CenterVertically,
                ) {
                    // onClick = null: the whole row is the click target.
                    RadioButton(
                        selected = option == vm.selected,
                        onClick = null,
                        enabled = !vm.generating,
                    )
                    Text(option.name, modifier = Modifier.padding(start = 8.dp))
                }
            }
        }

        OutlinedTextField(
            value = vm.prompt,
            onValueChange = { vm.prompt = it },
            label = { Text("Prompt") },
            enabled = vm.ready && !vm.generating,
            modifier = Modifier.fillMaxWidth(),
        )

        Row(horizontalArrangement = Arrangement.spacedBy(8.dp)) {
            Button(onClick = vm::generate, enabled = vm.ready && !vm.generating) {
                Text("Generate")
            }
            OutlinedButton(onClick = vm::cancel, enabled = vm.generating) {
                Text("Cancel")
            }
        }

        if (vm.details.isNotEmpty()) {
            Text(vm.details, style = MaterialTheme.typography.bodySmall)
        }
        Text(
            text = vm.output,
            style = MaterialTheme.typography.bodyLarge,
            modifier = Modifier
                .fillMaxWidth()
                .weight(1f)
                .verticalScroll(rememberScrollState()),
        )
    }
}
