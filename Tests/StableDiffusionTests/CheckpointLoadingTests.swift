import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// Corrupt, truncated or mismatched checkpoints give a one-line ModelError naming the problem, never a crash.
final class CheckpointLoadingTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-ckpt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A copy of tiny-sd1's VAE whose safetensors bytes went through `edit`.
    func vaeFolder(_ edit: (inout Data) -> Void) throws -> URL {
        let folder = dir.appendingPathComponent("vae")
        try? FileManager.default.removeItem(at: folder)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let src = Fixtures.url("tiny-sd1/vae")
        try FileManager.default.copyItem(at: src.appendingPathComponent("config.json"),
                                         to: folder.appendingPathComponent("config.json"))
        var data = try Data(contentsOf: src.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        edit(&data)
        try data.write(to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors"))
        return folder
    }

    func header(_ data: Data) -> (length: Int, json: [String: Any]) {
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        return (n, try! JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any])
    }

    func replaceHeader(_ data: inout Data, _ json: [String: Any]) {
        let old = header(data).length
        var h = try! JSONSerialization.data(withJSONObject: json)
        while h.count % 8 != 0 { h.append(0x20) }
        var len = UInt64(h.count)
        data = Data(bytes: &len, count: 8) + h + data.subdata(in: (8 + old)..<data.count)
    }

    func assertLoadFails(_ folder: URL, contains words: [String], file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try AutoencoderKL(folder: folder)
            XCTFail("loading succeeded", file: file, line: line)
        } catch let e as ModelError {
            XCTAssertFalse(e.message.contains("\n"), "not one line: \(e.message)", file: file, line: line)
            for w in words {
                XCTAssertTrue(e.message.contains(w), "'\(e.message)' lacks '\(w)'", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testIntactCopyLoads() throws {
        XCTAssertNoThrow(try AutoencoderKL(folder: try vaeFolder { _ in }))
    }

    func testTruncatedFile() throws {
        assertLoadFails(try vaeFolder { $0 = $0.prefix($0.count - 100) },
                        contains: ["outside the data area", "truncated"])
        assertLoadFails(try vaeFolder { $0 = $0.prefix(5) }, contains: ["truncated"])
    }

    func testHeaderLengthBeyondFile() throws {
        assertLoadFails(try vaeFolder { d in
            var huge = UInt64(d.count * 2)
            d.replaceSubrange(0..<8, with: Data(bytes: &huge, count: 8))
        }, contains: ["header length"])
    }

    func testBadJSON() throws {
        assertLoadFails(try vaeFolder { d in d[8] = UInt8(ascii: "#") }, contains: ["not a JSON object"])
    }

    func testOverlappingTensors() throws {
        assertLoadFails(try vaeFolder { d in
            var json = header(d).json
            let names = json.keys.filter { $0 != "__metadata__" }.sorted()
            var a = json[names[0]] as! [String: Any], b = json[names[1]] as! [String: Any]
            let ao = a["data_offsets"] as! [Int], bo = b["data_offsets"] as! [Int]
            // make b start inside a while keeping its length (and a's) consistent
            let len = bo[1] - bo[0]
            let start = ao[0] + 2 <= ao[1] ? ao[0] + 2 : ao[0]
            b["data_offsets"] = [start, start + len]
            if start + len > ao[1] || start < ao[1] { json[names[1]] = b }
            a["data_offsets"] = ao
            json[names[0]] = a
            replaceHeader(&d, json)
        }, contains: ["overlap"])
    }

    func testShapeDTypeLengthMismatch() throws {
        assertLoadFails(try vaeFolder { d in
            var json = header(d).json
            var e = json["decoder.conv_in.weight"] as! [String: Any]
            var shape = e["shape"] as! [Int]
            shape[0] += 1
            e["shape"] = shape
            json["decoder.conv_in.weight"] = e
            replaceHeader(&d, json)
        }, contains: ["decoder.conv_in.weight", "bytes, expected"])
    }

    func testMissingKeyIsNamed() throws {
        assertLoadFails(try vaeFolder { d in
            var json = header(d).json
            json.removeValue(forKey: "encoder.conv_in.bias")
            replaceHeader(&d, json)
        }, contains: ["vae: missing tensor 'encoder.conv_in.bias'", "vae/diffusion_pytorch_model.safetensors"])
    }

    /// As diffusers' from_pretrained: a stored tensor the config does not use is a warning naming it, not an error.
    func testUnexpectedKeyIsAWarningNamingIt() throws {
        let folder = try vaeFolder { _ in }
        let file = folder.appendingPathComponent("diffusion_pytorch_model.safetensors")
        let st = try SafetensorsFile(url: file)
        var all: [String: Tensor] = [:]
        for n in st.names { all[n] = try st.tensor(n) }
        all["decoder.extra_layer.weight"] = Tensor(shape: [3])
        try SafetensorsFile.write(all, to: file)
        let vae = try AutoencoderKL(folder: folder)
        XCTAssertEqual(vae.loadWarnings.count, 1)
        let warning = try XCTUnwrap(vae.loadWarnings.first)
        for w in ["vae: ", file.path, "unexpected tensor 'decoder.extra_layer.weight'", "ignored"] {
            XCTAssertTrue(warning.contains(w), "'\(warning)' lacks '\(w)'")
        }
        XCTAssertEqual(try AutoencoderKL(folder: try vaeFolder { _ in }).loadWarnings, [])
    }

    func testShapeMismatchAgainstConfig() throws {
        let folder = try vaeFolder { _ in }
        let configURL = folder.appendingPathComponent("config.json")
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        config["latent_channels"] = 8
        try JSONSerialization.data(withJSONObject: config).write(to: configURL)
        assertLoadFails(folder, contains: ["has shape", "expects"])
    }

    func testMissingFolderAndPipelineComponent() throws {
        XCTAssertThrowsError(try StableDiffusionPipeline(folder: dir.appendingPathComponent("nope"))) {
            XCTAssertTrue(($0 as? ModelError)?.message.contains("not found") == true)
        }
        XCTAssertThrowsError(try StableDiffusionPipeline(folder: dir)) {
            XCTAssertTrue(($0 as? ModelError)?.message.contains("tokenizer: no tokenizer/ folder") == true, "\($0)")
        }
    }

    func testSafetensorsRoundTripAndHalfPrecision() throws {
        let t = Tensor.randomNormal(shape: [3, 5], seed: 1)
        let url = dir.appendingPathComponent("rt.safetensors")
        try SafetensorsFile.write(["a": t], int64: ["ids": (shape: [2], values: [49406, 7])], to: url)
        let back = try SafetensorsFile(url: url)
        XCTAssertEqual(try back.tensor("a").array, t.array)
        XCTAssertEqual(try back.int64s("ids").values, [49406, 7])
        // The committed pipelines store F16 weights: they load as the exact f32 values diffusers used.
        let unetFile = try SafetensorsFile(url: Fixtures.url("tiny-sd1/unet/diffusion_pytorch_model.safetensors"))
        XCTAssertEqual(unetFile.entries["conv_in.weight"]?.dtype, .f16)
        XCTAssertEqual(try unetFile.tensor("conv_in.weight").shape, [32, 4, 3, 3])
    }
}
