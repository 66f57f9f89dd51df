import Foundation
import XCTest
import StableDiffusion

/// Inputs that crashed a parser (found with the libFuzzer harnesses of `make fuzz`, Fuzz/), kept in
/// Tests/Fixtures/fuzz/ as `<harness kind>-<what>.<ext>`: each must now give a ModelError (or parse), never trap.
/// Every file there is also replayed through the parser its name starts with.
final class FuzzRegressionTests: XCTestCase {
    static let folder = Fixtures.url("fuzz")

    /// What the harnesses do with one input (Fuzz/FuzzConfig, Fuzz/FuzzSafetensors, Fuzz/FuzzTokenizer).
    static func replay(_ name: String, _ data: Data) throws {
        if name.hasPrefix("config-") {
            let c = try JSONConfig(data: data, source: name)
            _ = try? UNet2DConditionConfig(c)
            _ = try? AutoencoderKLConfig(c)
            _ = try? CLIPTextConfig(c)
            if let s = try? DDIMSchedulerConfig(c) { _ = DDIMScheduler(config: s) }
        } else if name.hasPrefix("safetensors-") {
            _ = try? data.withUnsafeBytes { try SafetensorsFile.parseHeader($0, path: name) }
        } else if name.hasPrefix("tokenizer-") {
            let tokenizer = try CLIPTokenizer(folder: Fixtures.url("clip-bpe"))
            XCTAssertEqual(tokenizer.inputIds(String(decoding: data, as: UTF8.self)).count, 77, name)
        } else {
            XCTFail("\(name): name must start with config-, safetensors- or tokenizer-")
        }
    }

    func testEveryCrashInputNowParsesOrThrows() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).sorted()
        XCTAssertFalse(names.isEmpty)
        for name in names {
            try Self.replay(name, Data(contentsOf: Self.folder.appendingPathComponent(name)))
        }
    }

    /// Fuzz/FuzzConfig: `block_out_channels` [1] trapped ("Range requires lowerBound <= upperBound") on the
    /// freq_shift range 0...(1 / 2 − 1); the timestep embedding needs a first entry of at least 2.
    func testUNetBlockOutChannelsOfOneIsAnErrorNotATrap() throws {
        let data = try Data(contentsOf: Self.folder.appendingPathComponent("config-block-out-channels-1.json"))
        let c = try JSONConfig(data: data, source: "/abs/unet/config.json")
        XCTAssertThrowsError(try UNet2DConditionConfig(c)) { error in
            XCTAssertEqual("\(error)", "/abs/unet/config.json: key 'block_out_channels' has first entry 1, at least 2 "
                               + "needed for the timestep embedding")
        }
        // Two channels (one frequency) are the smallest UNet that builds its timestep embedding.
        var values = c.values
        values["block_out_channels"] = [2]
        values["norm_num_groups"] = 2
        XCTAssertNoThrow(try UNet2DConditionConfig(JSONConfig(values, source: "two")))
    }

    /// The in-memory parser the fuzzer drives is the one `SafetensorsFile(url:)` uses: same entries, same errors.
    func testParseHeaderFromBytesMatchesTheFile() throws {
        let url = Fixtures.url("tiny-sd1/reference/vae_decode_in.safetensors")
        let bytes = try Data(contentsOf: url)
        let header = try bytes.withUnsafeBytes { try SafetensorsFile.parseHeader($0, path: url.path) }
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(header.entries.keys.sorted(), file.names)
        for (name, entry) in header.entries { XCTAssertEqual(entry.shape, file.shape(of: name)) }
        XCTAssertThrowsError(try bytes.prefix(5).withUnsafeBytes { try SafetensorsFile.parseHeader($0, path: "p") }) {
            XCTAssertEqual("\($0)", "p: truncated file (5 bytes, too short for the 8-byte header length)")
        }
    }
}
