import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// Broken model folders (issue 15): a copy of tiny-sd1 with one thing wrong. Each error names the component
/// (unet/vae/text_encoder/tokenizer/scheduler), the file once by its absolute path, and the exact problem.
final class ModelFolderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-folders-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A copy of the tiny-sd1 pipeline under `name` (without its reference outputs).
    func copy(_ name: String) throws -> URL {
        let folder = dir.appendingPathComponent(name)
        try FileManager.default.copyItem(at: Fixtures.url("tiny-sd1"), to: folder)
        try FileManager.default.removeItem(at: folder.appendingPathComponent("reference"))
        return folder
    }

    /// Rewrites the JSON object at `folder/path` through `edit`.
    func editJSON(_ folder: URL, _ path: String, _ edit: (inout [String: Any]) -> Void) throws {
        let url = folder.appendingPathComponent(path)
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
    }

    /// Rewrites the tensors of a component's safetensors file through `edit` (as F32).
    func editTensors(_ folder: URL, _ path: String, _ edit: (inout [String: Tensor]) -> Void) throws {
        let url = folder.appendingPathComponent(path)
        let file = try SafetensorsFile(url: url)
        var all: [String: Tensor] = [:]
        for n in file.names { all[n] = try file.tensor(n) }
        edit(&all)
        try SafetensorsFile.write(all, to: url)
    }

    /// Loading `folder` throws a one-line ModelError of `kind` starting with `component: `, naming `file` (absolute)
    /// exactly once and containing every one of `words`.
    @discardableResult
    func assertRefused(_ folder: URL, component: String, file path: String?, _ words: [String],
                       kind: ModelError.Kind = .invalid, file: StaticString = #filePath, line: UInt = #line)
        -> String {
        do {
            _ = try StableDiffusionPipeline(folder: folder)
            XCTFail("loading succeeded", file: file, line: line)
        } catch let e as ModelError {
            let m = e.message
            XCTAssertFalse(m.contains("\n"), "not one line: \(m)", file: file, line: line)
            XCTAssertTrue(m.hasPrefix("\(component): "), "'\(m)' does not start with '\(component): '",
                          file: file, line: line)
            XCTAssertEqual(e.kind, kind, m, file: file, line: line)
            if let path {
                let absolute = folder.appendingPathComponent(path).path
                XCTAssertEqual(m.components(separatedBy: absolute).count - 1, 1, "'\(m)' names \(absolute) not once",
                               file: file, line: line)
            }
            XCTAssertEqual(m.components(separatedBy: folder.path).count - 1, 1, "'\(m)' names the folder twice",
                           file: file, line: line)
            for w in words { XCTAssertTrue(m.contains(w), "'\(m)' lacks '\(w)'", file: file, line: line) }
            return m
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
        return ""
    }

    func testIntactCopyLoadsWithoutWarnings() throws {
        XCTAssertEqual(try StableDiffusionPipeline(folder: try copy("intact")).warnings, [])
    }

    /// The committed pipelines (tiny SD1, tiny SD2, the bundled shapes-sd) load and use every stored tensor.
    func testCommittedPipelinesLoadWithoutWarnings() throws {
        let bundled = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Models/shapes-sd")
        for folder in [Fixtures.url("tiny-sd1"), Fixtures.url("tiny-sd2"), bundled] {
            XCTAssertEqual(try StableDiffusionPipeline(folder: folder).warnings, [], folder.path)
        }
    }

    /// Was: "missingkey/" followed by the absolute path, and "unsupported UNet layout".
    func testMissingConfigKeyIsNamedWithComponentAndPathOnce() throws {
        let folder = try copy("missingkey")
        try editJSON(folder, "unet/config.json") { $0.removeValue(forKey: "block_out_channels") }
        let m = assertRefused(folder, component: "unet", file: "unet/config.json",
                              ["missing key 'block_out_channels'"])
        XCTAssertFalse(m.contains("missingkey/\(folder.path)"), m)
        XCTAssertFalse(m.contains("unsupported UNet layout"), m)

        let vae = try copy("vaekey")
        try editJSON(vae, "vae/config.json") { $0.removeValue(forKey: "block_out_channels") }
        assertRefused(vae, component: "vae", file: "vae/config.json", ["missing key 'block_out_channels'"])
        let blocks = try copy("blocktypes")
        try editJSON(blocks, "unet/config.json") { $0.removeValue(forKey: "down_block_types") }
        assertRefused(blocks, component: "unet", file: "unet/config.json", ["missing key 'down_block_types'"])
    }

    func testWrongTypeForConfigKey() throws {
        let cases: [(String, String, Any, String)] = [
            ("unet/config.json", "block_out_channels", "32,64", "expected an array of ints, found a string"),
            ("unet/config.json", "block_out_channels", [32.5, 64], "expected an array of ints, found an array"),
            ("unet/config.json", "layers_per_block", "1", "expected an integer"),
            ("unet/config.json", "use_linear_projection", 1, "expected true or false"),
            ("unet/config.json", "down_block_types", [1, 2], "expected an array of strings"),
            ("vae/config.json", "latent_channels", [4], "expected an integer"),
            ("text_encoder/config.json", "hidden_size", 64.5, "expected an integer"),
            ("scheduler/scheduler_config.json", "beta_start", "small", "expected a number"),
        ]
        for (i, (path, key, value, words)) in cases.enumerated() {
            let folder = try copy("wrongtype\(i)")
            try editJSON(folder, path) { $0[key] = value }
            let component = String(path.prefix { $0 != "/" })
            assertRefused(folder, component: component, file: path, ["wrong type for key '\(key)'", words])
        }
    }

    func testCorruptConfigJSON() throws {
        let folder = try copy("corruptconfig")
        try Data("{\"block_out_channels\": [32, 64".utf8).write(to: folder.appendingPathComponent("unet/config.json"))
        assertRefused(folder, component: "unet", file: "unet/config.json", ["not a JSON object"])
    }

    /// Sizes the layers cannot be built with (they used to trap: empty lists, groups that do not divide).
    func testImpossibleSizesAreRefusedByKey() throws {
        let cases: [(String, String, Any, String)] = [
            ("unet/config.json", "block_out_channels", [Int](), "block_out_channels' has 0 entries"),
            ("unet/config.json", "block_out_channels", [33, 64], "33 is not divisible by norm_num_groups 8"),
            ("unet/config.json", "norm_num_groups", 0, "'norm_num_groups' has value 0"),
            ("unet/config.json", "block_out_channels", [1 << 40, 64], "outside 1...65536"),
            ("unet/config.json", "attention_head_dim", 5, "not divisible by its 5 attention heads"),
            ("unet/config.json", "layers_per_block", 0, "'layers_per_block' has value 0"),
            ("vae/config.json", "norm_num_groups", -1, "'norm_num_groups' has value -1"),
            ("text_encoder/config.json", "num_attention_heads", 5, "not divisible by num_attention_heads 5"),
            ("text_encoder/config.json", "max_position_embeddings", 10, "'max_position_embeddings' has value 10"),
            ("scheduler/scheduler_config.json", "num_train_timesteps", 0, "'num_train_timesteps' has value 0"),
        ]
        for (i, (path, key, value, words)) in cases.enumerated() {
            let folder = try copy("sizes\(i)")
            try editJSON(folder, path) { $0[key] = value }
            assertRefused(folder, component: String(path.prefix { $0 != "/" }), file: path, [words])
        }
    }

    /// Was: "trunc_vae/diffusion_pytorch_model.safetensors" without saying vae/.
    func testTruncatedWeightsNameComponentAndFile() throws {
        let folder = try copy("trunc_vae")
        let url = folder.appendingPathComponent("vae/diffusion_pytorch_model.safetensors")
        let data = try Data(contentsOf: url)
        try data.prefix(data.count - 100).write(to: url)
        assertRefused(folder, component: "vae", file: "vae/diffusion_pytorch_model.safetensors",
                      ["outside the data area", "truncated"])
    }

    func testMissingTensorIsAnError() throws {
        let folder = try copy("missingtensor")
        try editTensors(folder, "unet/diffusion_pytorch_model.safetensors") { $0.removeValue(forKey: "conv_in.bias") }
        assertRefused(folder, component: "unet", file: "unet/diffusion_pytorch_model.safetensors",
                      ["missing tensor 'conv_in.bias'"])
    }

    /// diffusers warns about unexpected keys and loads; so do we (the warning names component, file and tensor).
    func testExtraTensorIsAWarning() throws {
        let folder = try copy("extratensor")
        try editTensors(folder, "text_encoder/model.safetensors") {
            $0["text_model.encoder.layers.9.mlp.fc1.weight"] = Tensor(shape: [2, 2])
        }
        let pipeline = try StableDiffusionPipeline(folder: folder)
        XCTAssertEqual(pipeline.warnings.count, 1)
        let w = try XCTUnwrap(pipeline.warnings.first)
        let file = folder.appendingPathComponent("text_encoder/model.safetensors").path
        for part in ["text_encoder: ", file, "unexpected tensor 'text_model.encoder.layers.9.mlp.fc1.weight'"] {
            XCTAssertTrue(w.contains(part), "'\(w)' lacks '\(part)'")
        }
    }

    func testMissingComponentIsNamed() throws {
        for name in ModelError.components {
            let folder = try copy("no_\(name)")
            try FileManager.default.removeItem(at: folder.appendingPathComponent(name))
            assertRefused(folder, component: name, file: nil, ["no \(name)/ folder in \(folder.path)"],
                          kind: .notFound)
        }
        let noConfig = try copy("noconfig")
        try FileManager.default.removeItem(at: noConfig.appendingPathComponent("vae/config.json"))
        assertRefused(noConfig, component: "vae", file: "vae/config.json", ["file not found"], kind: .notFound)
        let noWeights = try copy("noweights")
        let unet = noWeights.appendingPathComponent("unet")
        try FileManager.default.moveItem(at: unet.appendingPathComponent("diffusion_pytorch_model.safetensors"),
                                         to: unet.appendingPathComponent("diffusion_pytorch_model.bin"))
        assertRefused(noWeights, component: "unet", file: "unet", ["no .safetensors weights", "PyTorch pickle"],
                      kind: .notFound)
        let noVocab = try copy("novocab")
        try FileManager.default.removeItem(at: noVocab.appendingPathComponent("tokenizer/vocab.json"))
        assertRefused(noVocab, component: "tokenizer", file: "tokenizer/vocab.json", ["file not found"],
                      kind: .notFound)
    }

    func testSDXLConfigsAreRefusedByName() throws {
        let unetCases: [(String, Any)] = [("addition_embed_type", "text_time"), ("cross_attention_dim", 2048),
                                          ("transformer_layers_per_block", [1, 2]),
                                          ("addition_time_embed_dim", 256)]
        for (i, (key, value)) in unetCases.enumerated() {
            let folder = try copy("sdxl\(i)")
            try editJSON(folder, "unet/config.json") { $0[key] = value }
            assertRefused(folder, component: "unet", file: "unet/config.json", [key, "SDXL", "not supported"])
        }
        let index = try copy("sdxlindex")
        try editJSON(index, "model_index.json") { $0["_class_name"] = "StableDiffusionXLPipeline" }
        do {
            _ = try StableDiffusionPipeline(folder: index)
            XCTFail("loaded an SDXL pipeline")
        } catch let e as ModelError {
            XCTAssertTrue(e.message.contains("StableDiffusionXLPipeline: SDXL is not supported"), e.message)
        }
        let second = try copy("sdxlencoder")
        try FileManager.default.copyItem(at: second.appendingPathComponent("text_encoder"),
                                         to: second.appendingPathComponent("text_encoder_2"))
        XCTAssertThrowsError(try StableDiffusionPipeline(folder: second)) {
            XCTAssertTrue("\($0)".contains("text_encoder_2/ folder (SDXL): SDXL is not supported"), "\($0)")
        }
    }

    func testOtherArchitecturesAreRefusedByName() throws {
        let cases: [(String, String, Any, String)] = [
            ("unet/config.json", "_class_name", "UNet2DModel", "_class_name UNet2DModel is not supported"),
            ("unet/config.json", "class_embed_type", "timestep", "class_embed_type timestep is not supported"),
            ("unet/config.json", "time_cond_proj_dim", 256, "time_cond_proj_dim 256 is not supported"),
            ("unet/config.json", "down_block_types", ["SimpleCrossAttnDownBlock2D", "DownBlock2D"],
             "block type SimpleCrossAttnDownBlock2D is not supported"),
            ("unet/config.json", "act_fn", "gelu", "act_fn gelu is not supported"),
            ("vae/config.json", "_class_name", "AutoencoderTiny", "_class_name AutoencoderTiny is not supported"),
            ("text_encoder/config.json", "architectures", ["T5EncoderModel"], "[\"T5EncoderModel\"] is not supported"),
        ]
        for (i, (path, key, value, words)) in cases.enumerated() {
            let folder = try copy("arch\(i)")
            try editJSON(folder, path) { $0[key] = value }
            assertRefused(folder, component: String(path.prefix { $0 != "/" }), file: path, [words])
        }
    }

    func testHostileTokenizerVocabulary() throws {
        let folder = try copy("vocab")
        try editJSON(folder, "tokenizer/vocab.json") { $0["hello</w>"] = 1 << 40 }
        assertRefused(folder, component: "tokenizer", file: "tokenizer/vocab.json", ["has id 1099511627776"])
        let beyond = try copy("vocabsize")
        try editJSON(beyond, "text_encoder/config.json") { $0["vocab_size"] = 1000 }
        do {
            _ = try StableDiffusionPipeline(folder: beyond)
            XCTFail("loaded a tokenizer with ids beyond the text encoder's vocabulary")
        } catch let e as ModelError {
            XCTAssertTrue(e.message.contains("vocab_size 1000") || e.message.contains("has shape"), e.message)
        }
    }
}

/// Inputs handed to a component from outside (`ocdedit model …` reads them from files): batch 0, empty images and
/// mismatched sizes are errors naming the input, and the kernels survive an empty batch anyway.
final class ComponentInputTests: XCTestCase {
    func assertRefused(_ body: () throws -> Void, _ words: [String], file: StaticString = #filePath,
                       line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let m = "\(error)"
            for w in words { XCTAssertTrue(m.contains(w), "'\(m)' lacks '\(w)'", file: file, line: line) }
        }
    }

    func testUNetInputsOfBatchZeroAndEmptySizesAreRefused() throws {
        let unet = try UNet2DConditionModel(folder: Fixtures.url("tiny-sd1/unet"))
        let d = unet.config.crossAttentionDim
        func check(_ s: [Int], _ t: Int, _ c: [Int]) throws {
            try unet.checkInputs(sample: Tensor(shape: s), timesteps: Tensor(shape: [t]), context: Tensor(shape: c),
                                 source: "in.safetensors")
        }
        XCTAssertNoThrow(try check([2, 4, 8, 8], 2, [2, 77, d]))
        assertRefused({ try check([0, 4, 8, 8], 0, [0, 77, d]) }, ["in.safetensors", "batch size 0"])
        assertRefused({ try check([1, 4, 0, 8], 1, [1, 77, d]) }, ["in.safetensors", "at least 1"])
        assertRefused({ try check([1, 4, 8, 8], 1, [1, 0, d]) }, ["at least 1"])
        assertRefused({ try check([2, 4, 8, 8], 1, [2, 77, d]) }, ["do not fit", "2 timesteps"])
        assertRefused({ try check([1, 3, 8, 8], 1, [1, 77, d]) }, ["in_channels 4"])
        assertRefused({ try check([4, 8, 8], 1, [1, 77, d]) }, ["must be [B,4,h,w]"])
        // Past the checks, the forward pass itself no longer divides by zero on an empty batch.
        let out = unet(Tensor(shape: [0, 4, 8, 8]), timesteps: [], encoderHiddenStates: Tensor(shape: [0, 77, d]))
        XCTAssertEqual(out.shape, [0, 4, 8, 8])
    }

    func testVAEInputsOfBatchZeroAndEmptySizesAreRefused() throws {
        let vae = try AutoencoderKL(folder: Fixtures.url("tiny-sd1/vae"))
        let f = vae.config.downscale
        XCTAssertNoThrow(try vae.checkEncodeInput(Tensor(shape: [1, 3, 2 * f, f]), source: "x"))
        assertRefused({ try vae.checkEncodeInput(Tensor(shape: [0, 3, f, f]), source: "x.safetensors") },
                      ["x.safetensors", "batch B at least 1"])
        assertRefused({ try vae.checkEncodeInput(Tensor(shape: [1, 3, 0, f]), source: "x") }, ["positive multiples"])
        assertRefused({ try vae.checkEncodeInput(Tensor(shape: [1, 3, f + 1, f]), source: "x") }, ["multiples"])
        XCTAssertNoThrow(try vae.checkDecodeInput(Tensor(shape: [1, 4, 3, 5]), source: "z"))
        assertRefused({ try vae.checkDecodeInput(Tensor(shape: [0, 4, 3, 5]), source: "z") }, ["at least 1"])
        assertRefused({ try vae.checkDecodeInput(Tensor(shape: [1, 4, 0, 5]), source: "z") }, ["at least 1"])
    }
}
