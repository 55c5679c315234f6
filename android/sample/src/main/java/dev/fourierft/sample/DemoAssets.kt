package dev.fourierft.sample

import android.content.Context
import android.content.res.AssetManager
import java.io.File
import java.io.IOException

/**
 * The demo model and adapters ship in the APK's assets (`assets/demo`, copied there from the
 * repository by the `copyDemoAssets` Gradle task). The Engine opens a folder on disk and maps
 * its weights, so they are copied once to `filesDir/demo`: on first start, and again after the
 * app is updated.
 */
object DemoAssets {
    private const val ROOT = "demo"
    private const val MARKER = ".installed"

    /** Copies the assets if needed (blocking: call it off the main thread); returns filesDir/demo. */
    @Throws(IOException::class)
    fun install(context: Context): File {
        val target = File(context.filesDir, ROOT)
        val stamp = installStamp(context)
        val marker = File(target, MARKER)
        if (marker.isFile && marker.readText() == stamp) {
            return target
        }
        if (context.assets.list("$ROOT/model").isNullOrEmpty()) {
            throw IOException(
                "the APK has no assets/demo/model: build it with Gradle, whose copyDemoAssets " +
                    "task copies the repository's assets/demo into the app",
            )
        }
        // Copy into a staging folder and rename it, so an interrupted copy is never used.
        val staging = File(context.filesDir, "$ROOT.partial")
        staging.deleteRecursively()
        copyTree(context.assets, ROOT, staging)
        File(staging, MARKER).writeText(stamp)
        target.deleteRecursively()
        if (!staging.renameTo(target)) {
            throw IOException("cannot rename $staging to $target")
        }
        return target
    }

    /** The adapter files in [demoDir], as (name, path), sorted by name. */
    fun adapterFiles(demoDir: File): List<Pair<String, File>> =
        File(demoDir, "adapters")
            .listFiles { file -> file.isFile && file.name.endsWith(ADAPTER_SUFFIX) }
            .orEmpty()
            .sortedBy { it.name }
            .map { it.name.removeSuffix(ADAPTER_SUFFIX) to it }

    private const val ADAPTER_SUFFIX = ".fft.safetensors"

    private fun copyTree(assets: AssetManager, path: String, dest: File) {
        val children = assets.list(path).orEmpty()
        if (children.isEmpty()) {
            // AssetManager lists files as folders without children.
            dest.parentFile?.mkdirs()
            assets.open(path).use { input ->
                dest.outputStream().use { output -> input.copyTo(output) }
            }
        } else {
            dest.mkdirs()
            for (child in children) {
                copyTree(assets, "$path/$child", File(dest, child))
            }
        }
    }

    @Suppress("DEPRECATION") // getPackageInfo(String, Int) is the overload available on API 24.
    private fun installStamp(context: Context): String =
        context.packageManager.getPackageInfo(context.packageName, 0).lastUpdateTime.toString()
}
