import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// `ocdedit model …` (the built command) on inputs that used to crash it: each is a one-line error on stderr and
/// exit status 1, never a signal.
final class ModelCommandTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let model = root.appendingPathComponent("Tests/Fixtures/tiny-sd1").path
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("ocdedit-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Runs the command built with the tests (debug or release) and returns its exit status and stderr.
    func run(_ arguments: [String]) throws -> (status: Int32, reason: Process.TerminationReason, stderr: String) {
        #if DEBUG
        let binary = Self.root.appendingPathComponent(".build/debug/ocdedit")
        #else
        let binary = Self.root.appendingPathComponent(".build/release/ocdedit")
        #endif
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw XCTSkip("\(binary.path) is missing: build the package first")
        }
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, process.terminationReason, String(decoding: stderr, as: UTF8.self))
    }

    func assertError(_ arguments: [String], _ words: [String], file: StaticString = #filePath, line: UInt = #line)
        throws {
        let r = try run(arguments)
        XCTAssertEqual(r.reason, .exit, "ended by a signal: \(r.stderr)", file: file, line: line)
        XCTAssertEqual(r.status, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("error: "), r.stderr, file: file, line: line)
        for w in words { XCTAssertTrue(r.stderr.contains(w), "'\(r.stderr)' lacks '\(w)'", file: file, line: line) }
    }

    func testUNetWithBatchZeroIsAnError() throws {
        let input = dir.appendingPathComponent("batch0.safetensors")
        try SafetensorsFile.write(["sample": Tensor(shape: [0, 4, 8, 8]), "timestep": Tensor(shape: [0]),
                                   "encoder_hidden_states": Tensor(shape: [0, 77, 32])], to: input)
        try assertError(["model", "unet", "--model", Self.model, "--input", input.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path],
                        [input.path, "batch size 0, must be at least 1"])
    }

    func testVAEWithBatchZeroOrEmptyImageIsAnError() throws {
        let latent = dir.appendingPathComponent("latent.safetensors")
        try SafetensorsFile.write(["latent": Tensor(shape: [0, 4, 4, 4])], to: latent)
        try assertError(["model", "vae-decode", "--model", Self.model, "--input", latent.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path], ["at least 1"])
        let sample = dir.appendingPathComponent("sample.safetensors")
        try SafetensorsFile.write(["sample": Tensor(shape: [1, 3, 0, 0])], to: sample)
        try assertError(["model", "vae-encode", "--model", Self.model, "--input", sample.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path], ["positive multiples"])
    }

    func testTextEncoderWithNoPromptsOrNonUTF8IsAnError() throws {
        let empty = dir.appendingPathComponent("empty.txt")
        try Data().write(to: empty)
        try assertError(["model", "text-encoder", "--model", Self.model, "--prompts", empty.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path], ["no prompts"])
        let latin1 = dir.appendingPathComponent("latin1.txt")
        try Data("a caf".utf8 + [0xe9] + Array(" au lait\n".utf8)).write(to: latin1)
        try assertError(["model", "text-encoder", "--model", Self.model, "--prompts", latin1.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path],
                        [latin1.path, "not UTF-8", "offset 5"])
    }

    func testBrokenModelFolderErrorNamesComponentAndKey() throws {
        let folder = dir.appendingPathComponent("missingkey")
        try FileManager.default.copyItem(at: URL(fileURLWithPath: Self.model), to: folder)
        let config = folder.appendingPathComponent("unet/config.json")
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        json.removeValue(forKey: "block_out_channels")
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        let input = dir.appendingPathComponent("in.safetensors")
        try SafetensorsFile.write(["sample": Tensor(shape: [1, 4, 8, 8]), "timestep": Tensor(shape: [1]),
                                   "encoder_hidden_states": Tensor(shape: [1, 77, 32])], to: input)
        try assertError(["model", "unet", "--model", folder.path, "--input", input.path,
                         "--output", dir.appendingPathComponent("out.safetensors").path],
                        ["error: unet: \(config.path): missing key 'block_out_channels'"])
    }

    /// `ocdedit model reatco-grad`, the contract: the fixture's input gives the autograd reference's loss, gradient
    /// and maps (Tests/Fixtures/make_gradient_fixtures.py); bad inputs are one-line errors.
    func testReAtCoGradientContract() throws {
        let reference = Self.root.appendingPathComponent("Tests/Fixtures/tiny-sd1/reference")
        let input = reference.appendingPathComponent("reatco_grad_L0_in.safetensors")
        let output = dir.appendingPathComponent("grad.safetensors")
        let r = try run(["model", "reatco-grad", "--model", Self.model, "--level", "0", "--input", input.path,
                         "--output", output.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let got = try SafetensorsFile(url: output)
        let expected = try SafetensorsFile(url: reference.appendingPathComponent("reatco_grad_L0_out.safetensors"))
        for (name, tolerance) in [("loss", Float(1e-4)), ("grad", 1e-3), ("maps", 1e-4)] {
            let (a, b) = (try got.tensor(name), try expected.tensor(name))
            XCTAssertEqual(a.shape, b.shape, name)
            var diff: Float = 0, scale: Float = 1e-12
            for i in 0..<min(a.count, b.count) {
                diff = max(diff, abs(a.data[i] - b.data[i]))
                scale = max(scale, abs(b.data[i]))
            }
            XCTAssertLessThanOrEqual(diff / scale, tolerance, "\(name): relative max error \(diff / scale)")
        }

        let source = try SafetensorsFile(url: input)
        func write(_ name: String, frames: Int = 3, regions: [Int] = [2, 3, 8, 12], tokens: [Int64] = [2, 5]) throws
            -> String {
            let url = dir.appendingPathComponent(name)
            let sample = try source.tensor("sample"), ctx = try source.tensor("encoder_hidden_states")
            try SafetensorsFile.write(["sample": sample.slice(first: 0, length: frames),
                                       "timestep": Tensor(shape: [frames], repeating: 500),
                                       "encoder_hidden_states": ctx.slice(first: 0, length: frames),
                                       "regions": Tensor(shape: regions)],
                                      int64: ["token_indices": ([tokens.count], tokens)], to: url)
            return url.path
        }
        let out = output.path
        try assertError(["model", "reatco-grad", "--model", Self.model, "--level", "0", "--input",
                         try write("one.safetensors", frames: 1, regions: [2, 1, 8, 12]), "--output", out],
                        ["1 frame", "at least 2"])
        try assertError(["model", "reatco-grad", "--model", Self.model, "--level", "1", "--input",
                         try write("grid.safetensors"), "--output", out], ["regions [2, 3, 8, 12]", "[2, 3, 4, 6]"])
        try assertError(["model", "reatco-grad", "--model", Self.model, "--level", "2", "--input",
                         try write("level.safetensors"), "--output", out], ["--level 2", "levels 0 to 1"])
        try assertError(["model", "reatco-grad", "--model", Self.model, "--level", "0", "--input",
                         try write("bos.safetensors", tokens: [0, 5]), "--output", out], ["token index 0"])
        // Regions of other values than 0 and 1; a context of other than 77 tokens.
        let twos = dir.appendingPathComponent("twos.safetensors")
        try SafetensorsFile.write(["sample": try source.tensor("sample"), "timestep": try source.tensor("timestep"),
                                   "encoder_hidden_states": try source.tensor("encoder_hidden_states"),
                                   "regions": Tensor(shape: [2, 3, 8, 12], repeating: 2)],
                                  int64: ["token_indices": ([2], [2, 5])], to: twos)
        try assertError(["model", "reatco-grad", "--model", Self.model, "--level", "0", "--input", twos.path,
                         "--output", out], ["regions hold 2.0", "0 or 1"])
        let short = dir.appendingPathComponent("short.safetensors")
        try SafetensorsFile.write(["sample": try source.tensor("sample"), "timestep": try source.tensor("timestep"),
                                   "encoder_hidden_states": Tensor(shape: [3, 10, 32]),
                                   "regions": Tensor(shape: [2, 3, 8, 12])],
                                  int64: ["token_indices": ([2], [2, 5])], to: short)
        try assertError(["model", "reatco-grad", "--model", Self.model, "--level", "0", "--input", short.path,
                         "--output", out], ["10 tokens", "77-token"])
    }
}
