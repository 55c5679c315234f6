package dev.fourierft.sample

import android.app.Application
import android.os.Handler
import android.os.Looper
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.setValue
import androidx.lifecycle.AndroidViewModel
import androidx.lifecycle.viewModelScope
import dev.fourierft.Engine
import dev.fourierft.EngineConfig
import dev.fourierft.FourierftException
import dev.fourierft.GenerateOptions
import dev.fourierft.GenerationStats
import dev.fourierft.TokenListener
import java.io.File
import java.io.IOException
import java.util.Locale
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.launch
import kotlinx.coroutines.withContext

/** An adapter the user can pick; `id == null` is the plain base model. */
data class AdapterOption(val name: String, val id: ULong?)

private val BASE = AdapterOption("None (base model)", null)

/**
 * Owns the [Engine]. Every Engine call blocks, so it runs on [Dispatchers.IO]; the
 * [TokenListener] is called on that thread and posts each piece to the main thread.
 * [cancel] may be called from any thread.
 */
class SampleViewModel(application: Application) : AndroidViewModel(application) {
    var status by mutableStateOf("Copying the demo model and opening it…")
        private set
    var adapters by mutableStateOf(listOf(BASE))
        private set
    var selected by mutableStateOf(BASE)
    var prompt by mutableStateOf("Today I want to tell you about")
    var output by mutableStateOf("")
        private set
    var details by mutableStateOf("")
        private set
    var ready by mutableStateOf(false)
        private set
    var generating by mutableStateOf(false)
        private set

    private var engine: Engine? = null
    private val mainThread = Handler(Looper.getMainLooper())

    init {
        viewModelScope.launch {
            try {
                val (opened, options, backend) = withContext(Dispatchers.IO) { open() }
                engine = opened
                adapters = listOf(BASE) + options
                status = "Demo model on $backend, ${options.size} adapters loaded."
                ready = true
            } catch (e: FourierftException) {
                status = "Could not open the model: ${e.message}"
            } catch (e: IOException) {
                status = "Could not copy the demo assets: ${e.message}"
            } catch (e: UnsatisfiedLinkError) {
                status = "libfourierft_ffi.so is missing for this device's ABI: ${e.message}"
            }
        }
    }

    /** Blocking: copies the assets if needed, opens the Engine and loads every adapter. */
    private fun open(): Triple<Engine, List<AdapterOption>, String> {
        val demo = DemoAssets.install(getApplication())
        val engine = Engine(EngineConfig(modelDir = File(demo, "model").absolutePath))
        try {
            val options = DemoAssets.adapterFiles(demo).map { (name, file) ->
                AdapterOption(name, engine.loadAdapter(file.absolutePath))
            }
            return Triple(engine, options, engine.stats().backend)
        } catch (e: Exception) {
            engine.close()
            throw e
        }
    }

    fun generate() {
        val engine = engine ?: return
        if (generating) return
        val text = prompt
        val adapter = selected
        output = ""
        details = "Generating with ${adapter.name}…"
        generating = true
        val listener = object : TokenListener {
            // Called on the generating (IO) thread: hop to the main thread for the UI.
            override fun onToken(piece: String) {
                mainThread.post { output += piece }
            }

            override fun onDone(stats: GenerationStats) = Unit
        }
        // A per-request adapter: the swap (if any) happens inside generate and is reported in
        // GenerationStats.swapMs; plainBase runs the base model whatever the Engine's current
        // adapter is.
        val options = GenerateOptions(
            maxTokens = 64u,
            adapterId = adapter.id,
            plainBase = adapter.id == null,
        )
        viewModelScope.launch {
            try {
                val result = withContext(Dispatchers.IO) {
                    engine.generate(text, options, listener)
                }
                // Posted after every onToken post, so this is the final text.
                output = result.text
                details = describe(adapter, result.stats)
            } catch (e: FourierftException) {
                details = "Error: ${e.message}"
            } finally {
                generating = false
            }
        }
    }

    /** Stops the running generation within one token; it returns with StopReason.CANCELLED. */
    fun cancel() {
        engine?.cancel()
    }

    override fun onCleared() {
        // close() frees the Rust Engine once a generate still running on IO has returned.
        engine?.let {
            it.cancel()
            it.close()
        }
        engine = null
    }

    private fun describe(adapter: AdapterOption, stats: GenerationStats): String =
        String.format(
            Locale.ROOT,
            "%s: swap %.2f ms, %d prompt + %d generated tokens, prefill %.1f tok/s, " +
                "decode %.1f tok/s, stopped: %s",
            adapter.name,
            stats.swapMs,
            stats.promptTokens.toLong(),
            stats.generatedTokens.toLong(),
            stats.prefillTokensPerSec,
            stats.decodeTokensPerSec,
            stats.stopReason.name.lowercase(Locale.ROOT).replace('_', ' '),
        )
}
