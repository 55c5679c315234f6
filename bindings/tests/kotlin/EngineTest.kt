// The generated Kotlin bindings against the desktop library, on the JVM with JNA.
// Run by bindings/tests/kotlin.rs: kotlinc EngineTest.kt fourierft_ffi.kt, then
//   java -Djna.library.path=<dir of libfourierft_ffi.so> -cp ... EngineTestKt <repo root>
// Prints one line per check and "N passed, N failed"; exits 1 on any failure.

import dev.fourierft.*
import java.io.File
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlin.system.exitProcess

var passed = 0
var failed = 0

class CheckFailed(msg: String) : Exception(msg)

fun expect(cond: Boolean, msg: () -> String) {
    if (!cond) throw CheckFailed(msg())
}

fun check(name: String, body: () -> Unit) {
    try {
        body()
        passed++
        println("ok   $name")
    } catch (e: Throwable) {
        failed++
        println("FAIL $name: ${e::class.qualifiedName}: ${e.message}")
    }
}

/** Runs `body`, which must throw a T; returns it. */
inline fun <reified T : Throwable> expectThrows(body: () -> Unit): T {
    try {
        body()
    } catch (e: Throwable) {
        if (e is T) return e
        throw CheckFailed("expected ${T::class.simpleName}, got ${e::class.qualifiedName}: ${e.message}")
    }
    throw CheckFailed("expected ${T::class.simpleName}, nothing was thrown")
}

/** A readable message names the file, and is not a dump of fields ("path=..., reason=..."). */
fun expectReadable(e: FourierftException, names: String) {
    val m = e.message ?: ""
    expect(m.contains(names)) { "message should name '$names': '$m'" }
    expect(!Regex("""\b\w+=""").containsMatchIn(m)) { "message looks like a field dump: '$m'" }
    println("     ${e::class.simpleName}: $m")
}

class Collector(private val onFirst: (() -> Unit)? = null) : TokenListener {
    val pieces = StringBuilder()
    val tokens = AtomicInteger(0)
    val done = AtomicInteger(0)
    var doneStats: GenerationStats? = null
    var threads = mutableSetOf<Long>()

    override fun onToken(piece: String) {
        threads.add(Thread.currentThread().id)
        pieces.append(piece)
        if (tokens.incrementAndGet() == 1) onFirst?.invoke()
    }

    override fun onDone(stats: GenerationStats) {
        threads.add(Thread.currentThread().id)
        done.incrementAndGet()
        doneStats = stats
    }
}

fun main(args: Array<String>) {
    val root = File(if (args.isNotEmpty()) args[0] else ".").canonicalFile
    val demo = File(root, "assets/demo")
    val adapters = File(demo, "adapters")
    val prompt = "Today I want to tell you about"
    val greedy = GenerateOptions(maxTokens = 24u)

    check("version") { expect(version().isNotEmpty()) { "empty version" } }

    check("GenerateOptions defaults match the contract") {
        val o = GenerateOptions()
        expect(o.maxTokens == 128u && o.temperature == 0.0f && o.topK == 0u && o.topP == 1.0f &&
            o.seed == 0uL && !o.chat && o.systemPrompt == null && o.stop.isEmpty() &&
            o.adapterId == null && !o.plainBase) { "defaults: $o" }
        val c = EngineConfig(modelDir = "m")
        expect(c.backend == null && c.maxContext == 2048u && c.overlayBudgetMb == 256u) { "defaults: $c" }
    }

    val engine = try {
        Engine(EngineConfig(modelDir = File(demo, "model").path, backend = BackendKind.CPU, maxContext = 512u))
    } catch (e: Throwable) {
        println("FAIL open the demo model: ${e::class.qualifiedName}: ${e.message}")
        println("0 passed, ${failed + 1} failed")
        exitProcess(1)
    }
    passed++
    println("ok   open the demo model on the CPU")

    var base = ""
    check("greedy generation with the base is deterministic") {
        val r = engine.generate(prompt, greedy, null)
        base = r.text
        expect(r.text.isNotBlank()) { "empty text" }
        expect(r.tokenIds.size.toUInt() == r.stats.generatedTokens) { "${r.tokenIds.size} ids vs ${r.stats.generatedTokens}" }
        expect(r.stats.generatedTokens in 1u..24u) { "generated ${r.stats.generatedTokens}" }
        expect(r.stats.promptTokens == 8u) { "prompt tokens ${r.stats.promptTokens} (golden.json: 8 with BOS)" }
        expect(r.stats.stopReason == StopReason.MAX_TOKENS || r.stats.stopReason == StopReason.EOS) { "${r.stats.stopReason}" }
        val again = engine.generate(prompt, greedy, null)
        expect(again.text == r.text && again.tokenIds == r.tokenIds) { "'${again.text}' vs '${r.text}'" }
    }

    val cooking = engine.loadAdapter(File(adapters, "cooking.fft.safetensors").path)
    val pirates = engine.loadAdapter(File(adapters, "pirates.fft.safetensors").path)
    var outCooking = ""
    var outPirates = ""
    check("setAdapter swaps; swapping back reproduces the output exactly") {
        expect(cooking != pirates) { "ids $cooking, $pirates" }
        engine.setAdapter(cooking)
        outCooking = engine.generate(prompt, greedy, null).text
        expect(outCooking != base) { "cooking == base: '$base'" }
        engine.setAdapter(pirates)
        outPirates = engine.generate(prompt, greedy, null).text
        expect(outPirates != outCooking && outPirates != base) { "pirates '$outPirates'" }
        engine.setAdapter(cooking)
        expect(engine.stats().lastSwapWarm) { "swap back to a cached adapter should be warm: ${engine.stats()}" }
        val back = engine.generate(prompt, greedy, null).text
        expect(back == outCooking) { "'$back' vs '$outCooking'" }
        engine.setAdapter(null)
        val plain = engine.generate(prompt, greedy, null).text
        expect(plain == base) { "'$plain' vs base '$base'" }
    }

    check("a per-request adapterId and plainBase leave the current adapter alone") {
        engine.setAdapter(cooking)
        val p = engine.generate(prompt, GenerateOptions(maxTokens = 24u, adapterId = pirates), null)
        expect(p.text == outPirates) { "'${p.text}' vs '$outPirates'" }
        val b = engine.generate(prompt, GenerateOptions(maxTokens = 24u, plainBase = true), null)
        expect(b.text == base) { "'${b.text}' vs base" }
        val c = engine.generate(prompt, greedy, null)
        expect(c.text == outCooking) { "current adapter: '${c.text}' vs '$outCooking'" }
        val e = expectThrows<FourierftException.InvalidArgument> {
            engine.generate(prompt, GenerateOptions(adapterId = pirates, plainBase = true), null)
        }
        expectReadable(e, "plain_base")
    }

    check("streamed pieces concatenate to the text; onDone once, on the calling thread") {
        val l = Collector()
        val r = engine.generate(prompt, GenerateOptions(maxTokens = 24u, adapterId = pirates), l)
        expect(l.pieces.toString() == r.text) { "'${l.pieces}' vs '${r.text}'" }
        expect(l.tokens.get() >= 2) { "${l.tokens.get()} pieces" }
        expect(l.done.get() == 1) { "onDone called ${l.done.get()} times" }
        expect(l.doneStats == r.stats) { "${l.doneStats} vs ${r.stats}" }
        expect(l.threads == setOf(Thread.currentThread().id)) { "callbacks on threads ${l.threads}" }
    }

    check("cancel from another thread stops a long generation; the engine stays usable") {
        lateinit var canceller: Thread
        val cancelled = CountDownLatch(1)
        val l = Collector(onFirst = {
            canceller = Thread { engine.cancel(); cancelled.countDown() }
            canceller.start()
            // Hold the generation until the other thread has cancelled, so the test does not
            // race a fast CPU.
            expect(cancelled.await(10, TimeUnit.SECONDS)) { "cancel thread did not run" }
        })
        val r = engine.generate(prompt, GenerateOptions(maxTokens = 400u, plainBase = true, stop = emptyList()), l)
        expect(r.stats.stopReason == StopReason.CANCELLED) { "stop reason ${r.stats.stopReason} after ${r.stats.generatedTokens} tokens" }
        expect(r.stats.generatedTokens in 1u..3u) { "stopped after ${r.stats.generatedTokens} tokens" }
        expect(l.done.get() == 1) { "onDone called ${l.done.get()} times" }
        expect(l.doneStats?.stopReason == StopReason.CANCELLED) { "onDone got ${l.doneStats}" }
        val again = engine.generate(prompt, GenerateOptions(maxTokens = 24u, plainBase = true), null)
        expect(again.text == base && again.stats.stopReason != StopReason.CANCELLED) { "after cancel: '${again.text}'" }
    }

    check("a listener that throws gives InternalException; the engine stays usable") {
        val thrower = object : TokenListener {
            override fun onToken(piece: String) = throw IllegalStateException("listener bug")
            override fun onDone(stats: GenerationStats) {}
        }
        expectThrows<InternalException> { engine.generate(prompt, GenerateOptions(maxTokens = 8u, plainBase = true), thrower) }
        val again = engine.generate(prompt, GenerateOptions(maxTokens = 24u, plainBase = true), null)
        expect(again.text == base) { "after a throwing listener: '${again.text}'" }
    }

    check("loadAdapterBytes equals loadAdapter of the same file; unloadAdapter forgets it") {
        val file = File(adapters, "animals.fft.safetensors")
        val fromPath = engine.loadAdapter(file.path)
        val fromBytes = engine.loadAdapterBytes(file.readBytes())
        expect(fromBytes != fromPath) { "same id $fromBytes" }
        val a = engine.generate(prompt, GenerateOptions(maxTokens = 24u, adapterId = fromPath), null).text
        val b = engine.generate(prompt, GenerateOptions(maxTokens = 24u, adapterId = fromBytes), null).text
        expect(a == b && a != base) { "path '$a' vs bytes '$b' (base '$base')" }
        engine.unloadAdapter(fromBytes)
        engine.unloadAdapter(fromPath)
        val e = expectThrows<FourierftException.InvalidArgument> {
            engine.generate(prompt, GenerateOptions(adapterId = fromBytes), null)
        }
        expectReadable(e, "$fromBytes")
        expectThrows<FourierftException.InvalidArgument> { engine.unloadAdapter(fromBytes) }
    }

    check("stats() reports the CPU backend, adapters and speeds") {
        engine.setAdapter(pirates)
        engine.generate(prompt, greedy, null)
        val s = engine.stats()
        expect(s.backend.lowercase().contains("cpu")) { "backend '${s.backend}'" }
        expect(s.adaptersLoaded == 2u) { "adaptersLoaded ${s.adaptersLoaded} (cooking, pirates)" }
        expect(s.activeAdapter == pirates) { "activeAdapter ${s.activeAdapter}, want $pirates" }
        expect(s.overlayBytes > 0uL) { "overlayBytes ${s.overlayBytes}" }
        expect(s.cachedOverlays >= 1u) { "cachedOverlays ${s.cachedOverlays}" }
        expect(s.lastSwapMs >= 0.0 && s.lastSwapMs < 60_000.0) { "lastSwapMs ${s.lastSwapMs}" }
        expect(s.lastPrefillTokensPerSec > 0.0 && s.lastDecodeTokensPerSec > 0.0) { "speeds $s" }
        engine.setAdapter(null)
        expect(engine.stats().activeAdapter == null) { "after setAdapter(null): ${engine.stats()}" }
    }

    check("a missing model folder raises Io naming the path") {
        val missing = File(root, "target/no-such-model-dir").path
        val e = expectThrows<FourierftException.Io> { Engine(EngineConfig(modelDir = missing, backend = BackendKind.CPU)) }
        expectReadable(e, missing)
    }

    check("a garbage adapter file raises InvalidAdapter naming the file") {
        val f = File.createTempFile("garbage", ".fft.safetensors")
        try {
            f.writeBytes(ByteArray(300) { (it * 37 + 11).toByte() })
            val e = expectThrows<FourierftException.InvalidAdapter> { engine.loadAdapter(f.path) }
            expectReadable(e, f.path)
        } finally {
            f.delete()
        }
        val e2 = expectThrows<FourierftException.InvalidAdapter> { engine.loadAdapterBytes(ByteArray(64) { 7 }) }
        expectReadable(e2, "<adapter bytes>")
    }

    check("an adapter for another model raises AdapterMismatch naming it") {
        // 30 layers of q/v for SmolLM2; the demo model has 4 (a tiny_llama adapter would fit: FourierFT
        // files store no shapes, only coefficients for the layers they name).
        val other = File(root, "tests/fixtures/smollm2/adapter_qv")
        val e = expectThrows<FourierftException.AdapterMismatch> { engine.loadAdapter(other.path) }
        expectReadable(e, other.path)
        expect(engine.stats().adaptersLoaded == 2u) { "a rejected adapter was registered" }
    }

    engine.close()
    println("$passed passed, $failed failed")
    exitProcess(if (failed == 0) 0 else 1)
}
