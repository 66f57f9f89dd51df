import Foundation
import TensorKernels

/// Where a model's parameters come from: a checkpoint folder, or deterministic random values (benchmarks).
public protocol WeightSource: AnyObject {
    /// The tensor stored under `key` (or one of `aliases`), checked against `shape`.
    func take(_ key: String, shape: [Int], aliases: [String]) throws -> Tensor
    /// Like `take`, but nil when absent.
    func takeOptional(_ key: String, shape: [Int]) throws -> Tensor?
    /// Called once every layer took its tensors; checkpoints record stored tensors no layer took as warnings.
    func finish() throws
    /// Whether `key` is stored (random weights store everything).
    func contains(_ key: String) -> Bool
}

extension WeightSource {
    public func take(_ key: String, shape: [Int]) throws -> Tensor { try take(key, shape: shape, aliases: []) }
}

/// The weights of one component folder (`unet/`, `vae/`, `text_encoder/`). Errors and warnings start with
/// `component` and name the file by its absolute path. As diffusers' `from_pretrained`: a tensor the config needs
/// but the checkpoint lacks is an error; a stored tensor no layer takes is a warning (`warnings`, filled by
/// `finish()`), not an error.
public final class CheckpointWeights: WeightSource {
    public let folder: URL
    /// The component (unet, vae, text_encoder) every message starts with.
    public let component: String
    private let files: [SafetensorsFile]
    private var taken = Set<String>()
    /// Keys that may be stored without any layer using them.
    public var ignorable: Set<String> = ["text_model.embeddings.position_ids", "embeddings.position_ids"]
    /// One line per file with stored tensors no layer took, after `finish()`.
    public private(set) var warnings: [String] = []

    public init(folder: URL, component: String) throws {
        self.folder = folder
        self.component = component
        let fm = FileManager.default
        guard let listing = try? fm.contentsOfDirectory(atPath: folder.path) else {
            throw ModelError("\(component): \(folder.path): folder not found", kind: .notFound)
        }
        let all = listing.filter { $0.hasSuffix(".safetensors") }.sorted()
        let preferred = ["diffusion_pytorch_model.safetensors", "model.safetensors"].filter(all.contains)
        let fp16 = all.filter { $0.contains(".fp16.") }
        let chosen = !preferred.isEmpty
            ? [preferred[0]]
            : (!fp16.isEmpty && fp16.count == all.count ? fp16 : all.filter { !$0.contains(".fp16.") })
        guard !chosen.isEmpty else {
            let pickles = listing.filter { $0.hasSuffix(".bin") || $0.hasSuffix(".ckpt") || $0.hasSuffix(".pt") }
            let found = pickles.isEmpty ? "" : " (found only PyTorch pickle weights "
                + pickles.sorted().joined(separator: ", ") + ", which are not read: convert them to safetensors)"
            throw ModelError("\(component): \(folder.path): no .safetensors weights (expected "
                             + "diffusion_pytorch_model.safetensors or model.safetensors)\(found)", kind: .notFound)
        }
        files = try ModelError.loading(component) {
            try chosen.map { try SafetensorsFile(url: folder.appendingPathComponent($0)) }
        }
    }

    private func find(_ key: String) -> SafetensorsFile? { files.first { $0.entries[key] != nil } }
    public func contains(_ key: String) -> Bool { find(key) != nil }

    /// The product of `shape`, nil when it overflows (a hostile config).
    static func elementCount(_ shape: [Int]) -> Int? {
        var n = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (p, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = p
        }
        return n
    }

    public func take(_ key: String, shape: [Int], aliases: [String]) throws -> Tensor {
        guard let (name, file) = ([key] + aliases).lazy.compactMap({ k in self.find(k).map { (k, $0) } }).first else {
            throw ModelError("\(component): missing tensor '\(key)' in " + files.map(\.url.path).joined(separator: ", ")
                                 + " (the config needs it)")
        }
        let stored = file.entries[name]!.shape
        // A 1×1 convolution may be stored as [O, C] (linear) or [O, C, 1, 1].
        guard let count = Self.elementCount(shape), Self.elementCount(stored) == count,
              stored == shape || stored.filter({ $0 != 1 }) == shape.filter({ $0 != 1 }) else {
            throw ModelError("\(component): \(file.url.path): tensor '\(name)' has shape \(stored), "
                                 + "the config expects \(shape)")
        }
        taken.insert(name)
        return try ModelError.loading(component) { try file.tensor(name).reshaped(shape) }
    }

    public func takeOptional(_ key: String, shape: [Int]) throws -> Tensor? {
        find(key) == nil ? nil : try take(key, shape: shape)
    }

    /// Records a warning naming every stored tensor no layer took (diffusers warns and ignores them too).
    public func finish() throws {
        warnings = files.compactMap { file in
            let unused = file.names.filter { !taken.contains($0) && !ignorable.contains($0) }
            guard !unused.isEmpty else { return nil }
            let list = unused.prefix(8).map { "'\($0)'" }.joined(separator: ", ")
                + (unused.count > 8 ? ", … (\(unused.count) in all)" : "")
            return "\(component): \(file.url.path): unexpected tensor\(unused.count == 1 ? "" : "s") \(list) "
                + "not used by the config (ignored)"
        }
    }
}

/// Deterministic random parameters (no download): weights ~ N(0, 1/fan_in), norm scales 1, biases 0.
/// Lets a full-size SD 1.5 UNet be built in memory for benchmarks.
public final class RandomWeights: WeightSource {
    private let seed: UInt64
    private var counter: UInt64 = 0
    public init(seed: UInt64) { self.seed = seed }

    public func take(_ key: String, shape: [Int], aliases: [String]) throws -> Tensor {
        counter += 1
        let isNorm = key.contains("norm") || key.hasSuffix("ln_1.weight") || key.hasSuffix("ln_2.weight")
        if key.hasSuffix(".bias") { return Tensor(shape: shape) }
        if isNorm && shape.count == 1 { return Tensor(shape: shape, repeating: 1) }
        let fanIn = max(1, shape.dropFirst().reduce(1, *))
        return Tensor.randomNormal(shape: shape, seed: seed &+ counter &* 7919, std: 1 / Float(fanIn).squareRoot())
    }
    public func takeOptional(_ key: String, shape: [Int]) throws -> Tensor? { try take(key, shape: shape) }
    public func finish() throws {}
    public func contains(_ key: String) -> Bool { true }
}
