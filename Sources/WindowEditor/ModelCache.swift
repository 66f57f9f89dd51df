// Loaded models, shared by everything in the process that names the same folder (every element instance, every
// session): the weights (UNet, VAE, text encoder) are read once and never copied. An entry lives while someone holds
// its `SharedModel`; the next request after the last holder lets go loads the folder again.
import Foundation
import StableDiffusion

/// A loaded model folder. Immutable after loading; editors only read it, so any number may use it at once.
public final class SharedModel: @unchecked Sendable {
    /// The folder as the cache keys it (standardized path).
    public let folder: String
    public let pipeline: StableDiffusionPipeline
    /// Wall-clock seconds the load from disk took.
    public let loadSeconds: Double

    init(folder: String, pipeline: StableDiffusionPipeline, loadSeconds: Double) {
        self.folder = folder
        self.pipeline = pipeline
        self.loadSeconds = loadSeconds
    }
}

public enum ModelCache {
    private final class Entry {
        weak var model: SharedModel?
        init(_ model: SharedModel) { self.model = model }
    }

    /// Held across a load: loads are serialised, so two requests for one folder load it once.
    private static let lock = NSLock()
    nonisolated(unsafe) private static var entries: [String: Entry] = [:]
    nonisolated(unsafe) private static var loads = 0

    /// Loads from disk since the process started (tests count them; cache hits do not count).
    public static var loadCount: Int { lock.withLock { loads } }

    /// The key of `folder`: the standardized absolute path (the cache is keyed on the folder alone).
    public static func key(_ folder: String) -> String { URL(fileURLWithPath: folder).standardizedFileURL.path }

    /// The model of `folder`, from the cache or loaded now. `willLoad` runs just before a load from disk (not on a
    /// cache hit), e.g. to announce a long load. Throws `modelNotFound` or `modelUnreadable` naming the folder.
    public static func model(folder: String, willLoad: () -> Void = {}) throws(EditorFailure) -> SharedModel {
        let key = key(folder)
        lock.lock()
        defer { lock.unlock() }
        if let cached = entries[key]?.model { return cached }
        willLoad()
        let start = DispatchTime.now()
        let pipeline: StableDiffusionPipeline
        do {
            pipeline = try StableDiffusionPipeline(folder: URL(fileURLWithPath: key))
        } catch {
            throw EditorFailure.loading(key, error)
        }
        loads += 1
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let model = SharedModel(folder: key, pipeline: pipeline, loadSeconds: seconds)
        entries = entries.filter { $0.value.model != nil }
        entries[key] = Entry(model)
        return model
    }
}
