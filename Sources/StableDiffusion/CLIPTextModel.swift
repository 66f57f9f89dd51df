import Foundation
import TensorKernels

public struct CLIPTextConfig: Sendable {
    public var vocabSize = 49408, hiddenSize = 768, intermediateSize = 3072
    public var layers = 12, heads = 12, maxPositions = 77
    public var quickGelu = true
    public var layerNormEps: Float = 1e-5

    public init() {}
    /// Reads and checks `c` (a transformers `text_encoder/config.json`), refusing other text models by name.
    public init(_ c: JSONConfig) throws {
        let architectures = try c.strings("architectures", ["CLIPTextModel"])
        guard architectures.allSatisfy({ $0.hasPrefix("CLIPTextModel") }) else {
            throw ModelError("\(c.source): architectures \(architectures) is not supported (only CLIPTextModel, "
                                 + "the text encoder of Stable Diffusion 1.x/2.x)")
        }
        let modelType = try c.string("model_type", "clip_text_model")
        guard modelType == "clip_text_model" || modelType == "clip" else {
            throw ModelError("\(c.source): model_type \(modelType) is not supported (only clip_text_model)")
        }
        vocabSize = try c.int("vocab_size", 49408)
        hiddenSize = try c.int("hidden_size", 512)
        intermediateSize = try c.int("intermediate_size", 2048)
        layers = try c.int("num_hidden_layers", 12)
        heads = try c.int("num_attention_heads", 8)
        maxPositions = try c.int("max_position_embeddings", 77)
        for (key, value, range) in [("vocab_size", vocabSize, 1...1_000_000), ("hidden_size", hiddenSize, 1...65536),
                                    ("intermediate_size", intermediateSize, 1...262_144),
                                    ("num_hidden_layers", layers, 1...256), ("num_attention_heads", heads, 1...4096),
                                    ("max_position_embeddings", maxPositions, 77...65536)] {
            try c.check(key, [value], in: range)
        }
        guard hiddenSize % heads == 0 else {
            throw ModelError("\(c.source): hidden_size \(hiddenSize) is not divisible by "
                                 + "num_attention_heads \(heads)")
        }
        layerNormEps = Float(try c.double("layer_norm_eps", 1e-5))
        let act = try c.string("hidden_act", "quick_gelu")
        guard act == "quick_gelu" || act == "gelu" else {
            throw ModelError("\(c.source): unsupported hidden_act \(act)")
        }
        quickGelu = act == "quick_gelu"
    }
}

/// transformers `CLIPTextModel`: token + position embeddings, pre-LN encoder layers with a causal mask, final LN.
public final class CLIPTextModel {
    public let config: CLIPTextConfig
    /// What loading from a folder warned about (stored tensors no layer uses), one line each.
    public internal(set) var loadWarnings: [String] = []
    let tokenEmbedding: Tensor, positionEmbedding: Tensor
    let layers: [(ln1: LayerNorm, q: Linear, k: Linear, v: Linear, out: Linear, ln2: LayerNorm,
                  fc1: Linear, fc2: Linear)]
    let finalNorm: LayerNorm

    public convenience init(folder: URL) throws {
        let config = try ModelError.loading("text_encoder") {
            try CLIPTextConfig(JSONConfig(url: folder.appendingPathComponent("config.json")))
        }
        let weights = try CheckpointWeights(folder: folder, component: "text_encoder")
        try self.init(config: config, weights: weights)
        try weights.finish()
        loadWarnings = weights.warnings
    }

    public init(config: CLIPTextConfig, weights w: WeightSource) throws {
        self.config = config
        // transformers ≤ 4 saves keys under "text_model."; transformers 5 saves them without the prefix.
        let d = config.hiddenSize
        let p = w.contains("text_model.embeddings.token_embedding.weight") ? "text_model" : ""
        func key(_ s: String) -> String { p.isEmpty ? s : "\(p).\(s)" }
        tokenEmbedding = try w.take(key("embeddings.token_embedding.weight"), shape: [config.vocabSize, d])
        positionEmbedding = try w.take(key("embeddings.position_embedding.weight"), shape: [config.maxPositions, d])
        layers = try (0..<config.layers).map { i in
            let l = key("encoder.layers.\(i)")
            return (try LayerNorm(w, "\(l).layer_norm1", d, eps: config.layerNormEps),
                    try Linear(w, "\(l).self_attn.q_proj", d, d), try Linear(w, "\(l).self_attn.k_proj", d, d),
                    try Linear(w, "\(l).self_attn.v_proj", d, d), try Linear(w, "\(l).self_attn.out_proj", d, d),
                    try LayerNorm(w, "\(l).layer_norm2", d, eps: config.layerNormEps),
                    try Linear(w, "\(l).mlp.fc1", d, config.intermediateSize),
                    try Linear(w, "\(l).mlp.fc2", config.intermediateSize, d))
        }
        finalNorm = try LayerNorm(w, key("final_layer_norm"), d, eps: config.layerNormEps)
    }

    /// last_hidden_state [P, L, D] for P id sequences of equal length L (77 for SD).
    public func callAsFunction(_ inputIds: [[Int32]]) -> Tensor {
        let p = inputIds.count, l = inputIds.first?.count ?? 0, d = config.hiddenSize
        precondition(inputIds.allSatisfy { $0.count == l } && l <= config.maxPositions,
                     "text encoder: ids of unequal or excessive length")
        var x = Tensor(shape: [p, l, d])
        for (i, ids) in inputIds.enumerated() {
            for (j, id) in ids.enumerated() {
                let token = Int(id)
                precondition(token >= 0 && token < config.vocabSize, "token id \(token) outside the vocabulary")
                let dst = x.data + (i * l + j) * d, te = tokenEmbedding.data + token * d
                let pe = positionEmbedding.data + j * d
                for c in 0..<d { dst[c] = te[c] + pe[c] }
            }
        }
        for layer in layers {
            let h = layer.ln1(x)
            let a = Ops.attention(query: layer.q(h), key: layer.k(h), value: layer.v(h), heads: config.heads,
                                  causal: true)
            Ops.addInPlace(x, layer.out(a))
            let f = layer.fc1(layer.ln2(x))
            Ops.addInPlace(x, layer.fc2(config.quickGelu ? Ops.quickGelu(f) : Ops.gelu(f)))
        }
        x = finalNorm(x)
        return x
    }
}
