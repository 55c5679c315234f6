import Foundation
import XCTest

import FourierFT

/// The demo model and adapters from the repository's assets/demo, through the Swift bindings:
/// greedy outputs equal the transformers + PEFT goldens, adapters swap and swap back, errors
/// map to FourierftError cases, and cancel stops a generation. Runs on the CPU backend, which
/// is deterministic everywhere (`swift test` on a Mac, or an iOS simulator, which can read the
/// repository through its path on the host).
final class EngineTests: XCTestCase {
    /// ios/Tests/FourierFTTests/EngineTests.swift -> the repository root.
    static let repoRoot = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()
        .deletingLastPathComponent()
    static let demo = repoRoot.appendingPathComponent("assets/demo", isDirectory: true)
    static let modelDir = demo.appendingPathComponent("model", isDirectory: true)

    // MARK: golden.json (written by tools/train_demo.py)

    struct Golden: Decodable {
        struct Output: Decodable {
            let ids: [UInt32]
            let text: String
        }

        struct Prompt: Decodable {
            let text: String
            let base: Output
        }

        struct Adapter: Decodable {
            let packed: String
            let outputs: [Output]
        }

        let prompts: [Prompt]
        let maxNewTokens: UInt32
        let adapters: [String: Adapter]
    }

    static func golden() throws -> Golden {
        let data = try Data(contentsOf: demo.appendingPathComponent("golden.json"))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Golden.self, from: data)
    }

    static func openEngine() throws -> Engine {
        try Engine(config: EngineConfig(modelDir: modelDir.path, backend: .cpu, maxContext: 256))
    }

    /// Collects what a TokenListener receives; the callbacks arrive on the generating thread.
    final class Collector: TokenListener, @unchecked Sendable {
        private let lock = NSLock()
        private var _pieces: [String] = []
        private var _done: [GenerationStats] = []
        /// Run on every piece, on the generating thread.
        var onPiece: ((Int) -> Void)?

        func onToken(piece: String) {
            lock.lock()
            _pieces.append(piece)
            let count = _pieces.count
            lock.unlock()
            onPiece?(count)
        }

        func onDone(stats: GenerationStats) {
            lock.lock()
            _done.append(stats)
            lock.unlock()
        }

        var pieces: [String] {
            lock.lock()
            defer { lock.unlock() }
            return _pieces
        }

        var done: [GenerationStats] {
            lock.lock()
            defer { lock.unlock() }
            return _done
        }
    }

    // MARK: tests

    func testBaseAndAdaptersMatchGoldens() throws {
        let golden = try Self.golden()
        let prompt = try XCTUnwrap(golden.prompts.first)
        let engine = try Self.openEngine()
        XCTAssertFalse(version().isEmpty)
        XCTAssertFalse(engine.stats().backend.isEmpty)

        let base = try engine.generate(
            prompt: prompt.text,
            options: GenerateOptions(maxTokens: golden.maxNewTokens, plainBase: true),
            listener: nil
        )
        XCTAssertEqual(base.tokenIds, prompt.base.ids, "base: \(base.text)")
        XCTAssertEqual(base.text, prompt.base.text)
        XCTAssertEqual(base.stats.stopReason, .maxTokens)
        XCTAssertEqual(base.stats.generatedTokens, golden.maxNewTokens)

        XCTAssertGreaterThanOrEqual(golden.adapters.count, 2)
        for (name, adapter) in golden.adapters.sorted(by: { $0.key < $1.key }) {
            let want = try XCTUnwrap(adapter.outputs.first)
            let id = try engine.loadAdapter(path: Self.demo.appendingPathComponent(adapter.packed).path)
            let result = try engine.generate(
                prompt: prompt.text,
                options: GenerateOptions(maxTokens: golden.maxNewTokens, adapterId: id),
                listener: nil
            )
            XCTAssertEqual(result.tokenIds, want.ids, "\(name): \(result.text)")
            XCTAssertEqual(result.text, want.text, name)
            XCTAssertNotEqual(result.text, base.text, "\(name) should change the output")
            XCTAssertGreaterThan(result.stats.swapMs, 0, "\(name): the first use of an adapter swaps")
        }
        XCTAssertEqual(engine.stats().adaptersLoaded, UInt32(golden.adapters.count))
    }

    func testSetAdapterSwapsAndSwappingBackReproduces() throws {
        let golden = try Self.golden()
        let prompt = try XCTUnwrap(golden.prompts.first).text
        let engine = try Self.openEngine()
        let names = golden.adapters.keys.sorted()
        let first = try XCTUnwrap(golden.adapters[names[0]])
        let second = try XCTUnwrap(golden.adapters[names[1]])
        let a = try engine.loadAdapter(path: Self.demo.appendingPathComponent(first.packed).path)
        let b = try engine.loadAdapter(path: Self.demo.appendingPathComponent(second.packed).path)
        XCTAssertNotEqual(a, b)
        // Requests without adapterId/plainBase use the Engine's current adapter.
        let options = GenerateOptions(maxTokens: 24)

        let base = try engine.generate(prompt: prompt, options: options, listener: nil)

        try engine.setAdapter(id: a)
        XCTAssertEqual(engine.stats().activeAdapter, a)
        let withA = try engine.generate(prompt: prompt, options: options, listener: nil)
        XCTAssertEqual(withA.stats.swapMs, 0, "set_adapter already installed it")

        try engine.setAdapter(id: b)
        let withB = try engine.generate(prompt: prompt, options: options, listener: nil)

        try engine.setAdapter(id: a)
        let stats = engine.stats()
        XCTAssertTrue(stats.lastSwapWarm, "swapping back finds the cached overlays")
        XCTAssertEqual(stats.activeAdapter, a)
        let withAAgain = try engine.generate(prompt: prompt, options: options, listener: nil)

        try engine.setAdapter(id: nil)
        let baseAgain = try engine.generate(prompt: prompt, options: options, listener: nil)

        XCTAssertNotEqual(withA.text, base.text)
        XCTAssertNotEqual(withB.text, base.text)
        XCTAssertNotEqual(withA.text, withB.text)
        XCTAssertEqual(withAAgain.tokenIds, withA.tokenIds)
        XCTAssertEqual(withAAgain.text, withA.text)
        XCTAssertEqual(baseAgain.tokenIds, base.tokenIds)
        XCTAssertNil(engine.stats().activeAdapter)

        try engine.unloadAdapter(id: b)
        XCTAssertEqual(engine.stats().adaptersLoaded, 1)
    }

    func testListenerStreamsThePiecesOfTheResult() throws {
        let prompt = try XCTUnwrap(Self.golden().prompts.first).text
        let engine = try Self.openEngine()
        let collector = Collector()
        let result = try engine.generate(
            prompt: prompt,
            options: GenerateOptions(maxTokens: 16, plainBase: true),
            listener: collector
        )
        XCTAssertFalse(collector.pieces.isEmpty)
        XCTAssertEqual(collector.pieces.joined(), result.text)
        XCTAssertEqual(collector.done, [result.stats], "onDone once, with the result's stats")
    }

    func testErrorsMapToFourierftErrorCases() throws {
        let missing = Self.demo.appendingPathComponent("no-such-model").path
        XCTAssertThrowsError(try Engine(config: EngineConfig(modelDir: missing))) { error in
            guard case let FourierftError.Io(message) = error else {
                return XCTFail("expected FourierftError.Io, got \(error)")
            }
            XCTAssertTrue(message.contains("no-such-model"), message)
        }

        let notAFolder = Self.modelDir.appendingPathComponent("config.json").path
        XCTAssertThrowsError(try Engine(config: EngineConfig(modelDir: notAFolder))) { error in
            guard case FourierftError.InvalidModel = error else {
                return XCTFail("expected FourierftError.InvalidModel, got \(error)")
            }
        }

        let engine = try Self.openEngine()
        let missingAdapter = Self.demo.appendingPathComponent("adapters/missing.fft.safetensors").path
        XCTAssertThrowsError(try engine.loadAdapter(path: missingAdapter)) { error in
            guard case let FourierftError.Io(message) = error else {
                return XCTFail("expected FourierftError.Io, got \(error)")
            }
            XCTAssertTrue(message.contains("missing.fft.safetensors"), message)
        }
        XCTAssertThrowsError(try engine.setAdapter(id: 987_654)) { error in
            guard case FourierftError.InvalidArgument = error else {
                return XCTFail("expected FourierftError.InvalidArgument, got \(error)")
            }
        }
        XCTAssertThrowsError(
            try engine.generate(
                prompt: "Hello",
                options: GenerateOptions(adapterId: 1, plainBase: true),
                listener: nil
            )
        ) { error in
            guard case FourierftError.InvalidArgument = error else {
                return XCTFail("expected FourierftError.InvalidArgument, got \(error)")
            }
        }
    }

    func testCancelStopsTheRunningGeneration() throws {
        let golden = try Self.golden()
        let prompt = try XCTUnwrap(golden.prompts.first)
        let engine = try Self.openEngine()
        let options = GenerateOptions(maxTokens: golden.maxNewTokens, plainBase: true)

        // From the listener (the generating thread), after the first piece.
        let collector = Collector()
        collector.onPiece = { count in
            if count == 1 { engine.cancel() }
        }
        let cancelled = try engine.generate(prompt: prompt.text, options: options, listener: collector)
        XCTAssertEqual(cancelled.stats.stopReason, .cancelled)
        XCTAssertLessThanOrEqual(cancelled.stats.generatedTokens, 2, "stops within one token")
        XCTAssertEqual(collector.done.count, 1, "onDone is called when cancelled too")

        // From another thread, while generate blocks this one.
        let started = DispatchSemaphore(value: 0)
        let other = Collector()
        other.onPiece = { count in
            if count == 1 { started.signal() }
        }
        DispatchQueue.global().async {
            started.wait()
            engine.cancel()
        }
        let stopped = try engine.generate(
            prompt: prompt.text,
            options: GenerateOptions(maxTokens: 200, plainBase: true),
            listener: other
        )
        XCTAssertEqual(stopped.stats.stopReason, .cancelled)

        // A cancel while nothing runs does not stop the next request.
        engine.cancel()
        let full = try engine.generate(prompt: prompt.text, options: options, listener: nil)
        XCTAssertEqual(full.stats.stopReason, .maxTokens)
        XCTAssertEqual(full.tokenIds, prompt.base.ids)
    }
}
