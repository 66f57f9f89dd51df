import Foundation
import XCTest
import StableDiffusion

final class TokenizerTests: XCTestCase {
    /// ≥ 200 prompts (unicode, punctuation, repeated whitespace, past 77 tokens) against open_clip's ids.
    /// open_clip pads with 0; SD 1.x pads with EOS: everything after the first EOS must be our pad token.
    func testIdsMatchOpenCLIP() throws {
        let tok = try CLIPTokenizer(folder: Fixtures.url("clip-bpe"))
        let prompts = try String(contentsOf: Fixtures.url("tokenizer/prompts.txt"), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        let data = try Data(contentsOf: Fixtures.url("tokenizer/ids.json"))
        let expected = try JSONSerialization.jsonObject(with: data) as! [[Int]]
        XCTAssertEqual(prompts.count, expected.count)
        XCTAssertGreaterThanOrEqual(prompts.count, 200)
        var mismatches = 0
        for (prompt, ref) in zip(prompts, expected) {
            let eosAt = ref.firstIndex(of: Int(tok.eos))!
            let want = ref.enumerated().map { $0.offset > eosAt ? Int(tok.pad) : $0.element }
            let got = tok.inputIds(prompt).map(Int.init)
            if got != want {
                mismatches += 1
                XCTFail("prompt \(prompt.debugDescription): got \(got.prefix(eosAt + 2)) "
                            + "want \(want.prefix(eosAt + 2))")
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    /// The tiny pipelines' tokenizers (SD1 pads with EOS, SD2 with "!" = 0) give transformers' input_ids.
    func testPipelineTokenizersMatchTransformers() throws {
        for name in ["tiny-sd1", "tiny-sd2"] {
            let tok = try CLIPTokenizer(folder: Fixtures.url("\(name)/tokenizer"))
            let prompts = try String(contentsOf: Fixtures.url("\(name)/reference/prompts.txt"), encoding: .utf8)
                .split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
            let ids = try Fixtures.tensors("\(name)/reference/text_encoder_out.safetensors").int64s("input_ids").values
            for (i, p) in prompts.enumerated() {
                XCTAssertEqual(tok.inputIds(p).map(Int64.init), Array(ids[(i * 77)..<((i + 1) * 77)]), "\(name): \(p)")
            }
        }
    }

    func testTruncationKeepsBOSAnd75TokensAndEOS() throws {
        let tok = try CLIPTokenizer(folder: Fixtures.url("clip-bpe"))
        let ids = tok.inputIds(Array(repeating: "cat", count: 200).joined(separator: " "))
        XCTAssertEqual(ids.count, 77)
        XCTAssertEqual(ids.first, 49406)
        XCTAssertEqual(ids.last, 49407)
        XCTAssertEqual(Set(ids[1..<76]).count, 1)
    }
}
