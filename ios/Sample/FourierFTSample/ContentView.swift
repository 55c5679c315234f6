import FourierFT
import SwiftUI

/// An adapter the user can pick; `adapterId == nil` is the plain base model.
struct AdapterOption: Hashable, Identifiable {
    let name: String
    let adapterId: UInt64?

    var id: String { name }

    static let base = AdapterOption(name: "None (base model)", adapterId: nil)
}

/// Streams a generation's pieces, in order, from the generating thread to whoever iterates
/// `pieces` (here the main actor).
final class StreamingListener: TokenListener, @unchecked Sendable {
    let pieces: AsyncStream<String>
    private let continuation: AsyncStream<String>.Continuation

    init() {
        var made: AsyncStream<String>.Continuation?
        pieces = AsyncStream { made = $0 }
        continuation = made!
    }

    func onToken(piece: String) {
        continuation.yield(piece)
    }

    func onDone(stats: GenerationStats) {
        continuation.finish()
    }

    /// Ends the stream when generate failed (onDone is not called then); finishing twice is fine.
    func finish() {
        continuation.finish()
    }
}

/// Owns the Engine. Every Engine call blocks, so it runs in `Task.detached`; the UI state lives
/// on the main actor. `cancel()` may be called from any thread.
@MainActor
final class SampleModel: ObservableObject {
    @Published private(set) var status = "Opening the demo model…"
    @Published private(set) var adapters: [AdapterOption] = [.base]
    @Published var selection: AdapterOption = .base
    @Published var prompt = "Today I want to tell you about"
    @Published private(set) var output = ""
    @Published private(set) var details = ""
    @Published private(set) var ready = false
    @Published private(set) var generating = false

    private var engine: Engine?

    init() {
        Task { await open() }
    }

    private func open() async {
        // The demo assets are a folder reference named "demo" in the app bundle (ios/README.md);
        // the Engine maps the weights straight from the bundle.
        guard let demo = Bundle.main.url(forResource: "demo", withExtension: nil) else {
            status = "The app bundle has no demo folder: add assets/demo as a folder reference."
            return
        }
        do {
            let (engine, options, backend) = try await Task.detached(priority: .userInitiated) {
                try Self.openEngine(demo: demo)
            }.value
            self.engine = engine
            adapters = [.base] + options
            status = "Demo model on \(backend), \(options.count) adapters loaded."
            ready = true
        } catch {
            status = "Could not open the model: \(Self.message(of: error))"
        }
    }

    /// Blocking: opens the model and loads every packed adapter in demo/adapters.
    private nonisolated static func openEngine(demo: URL) throws -> (Engine, [AdapterOption], String) {
        let engine = try Engine(config: EngineConfig(modelDir: demo.appendingPathComponent("model").path))
        let suffix = ".fft.safetensors"
        let files = try FileManager.default
            .contentsOfDirectory(at: demo.appendingPathComponent("adapters"), includingPropertiesForKeys: nil)
            .filter { $0.lastPathComponent.hasSuffix(suffix) }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let options = try files.map { file in
            AdapterOption(
                name: String(file.lastPathComponent.dropLast(suffix.count)),
                adapterId: try engine.loadAdapter(path: file.path)
            )
        }
        return (engine, options, engine.stats().backend)
    }

    func generate() {
        guard let engine, ready, !generating else { return }
        let adapter = selection
        // A per-request adapter: the swap (if any) happens inside generate and is reported in
        // GenerationStats.swapMs; plainBase runs the base model whatever the current adapter is.
        let options = GenerateOptions(
            maxTokens: 64,
            adapterId: adapter.adapterId,
            plainBase: adapter.adapterId == nil
        )
        let prompt = self.prompt
        let listener = StreamingListener()
        output = ""
        details = "Generating with \(adapter.name)…"
        generating = true

        // This Task runs on the main actor; the blocking call runs detached from it.
        Task {
            let work = Task.detached(priority: .userInitiated) { () throws -> GenerationResult in
                defer { listener.finish() }
                return try engine.generate(prompt: prompt, options: options, listener: listener)
            }
            for await piece in listener.pieces {
                output += piece
            }
            do {
                let result = try await work.value
                output = result.text
                details = Self.describe(adapter: adapter, stats: result.stats)
            } catch {
                details = "Error: \(Self.message(of: error))"
            }
            generating = false
        }
    }

    /// Stops the running generation within one token; it returns with StopReason.cancelled.
    func cancel() {
        engine?.cancel()
    }

    private static func describe(adapter: AdapterOption, stats: GenerationStats) -> String {
        let stop: String
        switch stats.stopReason {
        case .eos: stop = "end of text"
        case .stopString: stop = "stop string"
        case .maxTokens: stop = "token limit"
        case .contextFull: stop = "context full"
        case .cancelled: stop = "cancelled"
        }
        return String(
            format: "%@: swap %.2f ms, %u prompt + %u generated tokens, decode %.1f tok/s, %@",
            adapter.name, stats.swapMs, stats.promptTokens, stats.generatedTokens,
            stats.decodeTokensPerSec, stop
        )
    }

    /// The readable Rust message of a FourierftError (each case carries it).
    private nonisolated static func message(of error: Error) -> String {
        guard let error = error as? FourierftError else {
            return error.localizedDescription
        }
        switch error {
        case let .Io(message), let .InvalidModel(message), let .InvalidAdapter(message),
             let .AdapterMismatch(message), let .Unsupported(message), let .Gpu(message),
             let .InvalidArgument(message):
            return message
        }
    }
}

struct ContentView: View {
    @StateObject private var model = SampleModel()

    var body: some View {
        NavigationView {
            Form {
                Section {
                    Text(model.status)
                        .font(.footnote)
                        .foregroundStyle(.secondary)
                }
                Section("Adapter") {
                    Picker("Adapter", selection: $model.selection) {
                        ForEach(model.adapters) { option in
                            Text(option.name).tag(option)
                        }
                    }
                    .pickerStyle(.inline)
                    .labelsHidden()
                    .disabled(model.generating)
                }
                Section("Prompt") {
                    TextField("Prompt", text: $model.prompt)
                        .disabled(!model.ready || model.generating)
                    HStack {
                        Button("Generate") { model.generate() }
                            .disabled(!model.ready || model.generating)
                        Spacer()
                        Button("Cancel", role: .cancel) { model.cancel() }
                            .disabled(!model.generating)
                    }
                    // Two buttons in one Form row: without this, a tap anywhere fires both.
                    .buttonStyle(.borderless)
                }
                Section("Output") {
                    if !model.details.isEmpty {
                        Text(model.details)
                            .font(.footnote)
                            .foregroundStyle(.secondary)
                    }
                    Text(model.output)
                        .textSelection(.enabled)
                        .frame(maxWidth: .infinity, minHeight: 120, alignment: .topLeading)
                }
            }
            .navigationTitle("FourierFT")
        }
        .navigationViewStyle(.stack)
    }
}
