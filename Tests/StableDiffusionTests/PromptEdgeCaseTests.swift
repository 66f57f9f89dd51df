import Foundation
import XCTest
import StableDiffusion
import TensorKernels

/// Prompts a user (or a pipeline description) may hand the element (issue 15): empty, blank, too long, huge, odd
/// Unicode, invalid UTF-8 repaired on the way in. None may crash; each gives 77 ids (BOS … EOS, padded) as
/// transformers' CLIPTokenizer with `padding="max_length", truncation=True, max_length=77` does in diffusers.
final class PromptEdgeCaseTests: XCTestCase {
    static let clip = try! CLIPTokenizer(folder: Fixtures.url("clip-bpe"))

    /// 77 ids: BOS first, an EOS, only pad tokens after it, every id in the vocabulary.
    func assertWellFormed(_ ids: [Int32], _ tok: CLIPTokenizer, _ label: String, file: StaticString = #filePath,
                          line: UInt = #line) {
        XCTAssertEqual(ids.count, 77, label, file: file, line: line)
        XCTAssertEqual(ids.first, tok.bos, label, file: file, line: line)
        guard let eosAt = ids.dropFirst().firstIndex(of: tok.eos) else {
            return XCTFail("\(label): no EOS in \(ids)", file: file, line: line)
        }
        XCTAssertTrue(ids[(eosAt + 1)...].allSatisfy { $0 == tok.pad }, "\(label): \(ids)", file: file, line: line)
        XCTAssertTrue(ids.allSatisfy { $0 >= 0 && $0 <= tok.maxId }, "\(label): \(ids)", file: file, line: line)
    }

    /// diffusers accepts "" (the unconditional prompt of classifier-free guidance): BOS, EOS, then padding.
    func testEmptyAndWhitespaceOnlyPromptsAreBOSEOSAndPadding() throws {
        for folder in ["clip-bpe", "tiny-sd1/tokenizer", "tiny-sd2/tokenizer"] {
            let tok = try CLIPTokenizer(folder: Fixtures.url(folder))
            let expected = [tok.bos, tok.eos] + Array(repeating: tok.pad, count: 75)
            for prompt in ["", " ", "   \t\n\r  ", "\u{3000}\u{a0}\u{2003}", "\n\n\n", "\u{0}\u{1}\u{7f}"] {
                XCTAssertEqual(tok.inputIds(prompt), expected, "\(folder): \(prompt.debugDescription)")
                XCTAssertEqual(tok.encode(prompt), [], "\(folder): \(prompt.debugDescription)")
            }
        }
    }

    /// Past 77 tokens: BOS, the first 75 tokens, EOS (CLIP's truncation; diffusers logs what it cut).
    func testPromptPast77TokensKeepsTheFirst75() throws {
        let tok = Self.clip
        let words = (0..<120).map { "word\($0)" }.joined(separator: " ")
        let all = tok.encode(words)
        XCTAssertGreaterThan(all.count, 75)
        let ids = tok.inputIds(words)
        assertWellFormed(ids, tok, "120 words")
        XCTAssertEqual(Array(ids[1..<76]), Array(all.prefix(75)))
        XCTAssertEqual(ids[76], tok.eos)
        // Exactly 75 tokens fit without truncation; 76 lose the last one.
        let seventyFive = Array(repeating: "cat", count: 75).joined(separator: " ")
        XCTAssertEqual(tok.inputIds(seventyFive), tok.inputIds(seventyFive + " dog"))
        XCTAssertEqual(tok.inputIds(seventyFive)[76], tok.eos)
    }

    /// 10 000 characters of several kinds (spaces, one huge word, punctuation, digits, emoji, CJK): no crash,
    /// truncated to 77 ids, and quick (BPE of one 10 000-byte word included).
    func testTenThousandCharacterPrompts() throws {
        let tok = Self.clip
        var letters = "", cjk = ""
        for i in 0..<10_000 { letters.unicodeScalars.append(Unicode.Scalar(UInt8(97 + (i * 7919 + i / 3) % 26))) }
        for i in 0..<10_000 { cjk.unicodeScalars.append(Unicode.Scalar(UInt32(0x4e00 + (i * 7919) % 20000))!) }
        let prompts = [
            String(String(repeating: "a red circle on a blue background, ", count: 300).prefix(10_000)),
            letters, cjk,
            String(repeating: "!?", count: 5_000),
            String(repeating: "0123456789", count: 1_000),
            String(repeating: "😀", count: 10_000),
            String(repeating: "&amp;", count: 2_000),
        ]
        for p in prompts {
            XCTAssertGreaterThanOrEqual(p.count, 10_000)
            let start = Date()
            let ids = tok.inputIds(p)
            assertWellFormed(ids, tok, String(p.prefix(20)))
            XCTAssertEqual(ids[76], tok.eos, "truncated: EOS last")
            XCTAssertLessThan(Date().timeIntervalSince(start), 10, "tokenizing \(p.prefix(20))… took too long")
        }
    }

    /// Any Swift String: combining marks (thousands on one letter), emoji sequences, NUL and other controls, lone
    /// format characters, private use, right-to-left text, noncharacters, U+FFFD.
    func testOddUnicodeNeverCrashes() throws {
        let tok = Self.clip
        let prompts = [
            "e\u{301}\u{302}\u{303}\u{304} cafe\u{301}", "a" + String(repeating: "\u{301}", count: 5_000),
            "👩‍👩‍👧‍👦 🇫🇷 🏳️‍🌈 👍🏽", "a\u{0}b\u{0}", "\u{0}", "tab\there\u{1b}[31mred\u{1b}[0m",
            "\u{200b}\u{200d}\u{feff}\u{2060}", "\u{e000}\u{f8ff}\u{10ffff}", "שלום עולם مرحبا", "\u{fffd}\u{fffe}",
            "\u{d7ff}\u{e000}", "ǅungla ﬁne Ⅻ ½ ²", "ＡＢＣ　ｄｅｆ", "\"quotes\" ‘single’ “double”", "'s'''t're",
            "&lt;&gt;&amp;&#39;&quot;&nbsp;", "<|startoftext|><|endoftext|>", "\r\n\u{85}\u{2028}\u{2029}",
        ]
        for p in prompts {
            let ids = tok.inputIds(p)
            assertWellFormed(ids, tok, p.debugDescription)
            XCTAssertEqual(tok.inputIds(p), ids, "deterministic: \(p.debugDescription)")
        }
        XCTAssertEqual(tok.inputIds("a\u{0}b"), tok.inputIds("ab"), "controls are dropped (open_clip's clean)")
    }

    /// A prompt arrives as bytes only through GStreamer string properties (UTF-8 by contract) and prompt files: the
    /// element reads properties with String(cString:), which repairs invalid UTF-8 into U+FFFD; the tokenizer then
    /// sees an ordinary String. (`ocdedit model text-encoder` refuses a non-UTF-8 file: ModelCommandTests.)
    func testInvalidUTF8RepairedOnTheWayInTokenizes() throws {
        let tok = Self.clip
        /// What the element does with a gchar* property value.
        func fromGChar(_ bytes: [UInt8]) -> String {
            let chars = bytes.map { CChar(bitPattern: $0) } + [0]
            return chars.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
        let invalid: [[UInt8]] = [[0x61, 0xff, 0xfe, 0x62], [0xc3, 0x28], [0xe2, 0x82], [0xed, 0xa0, 0x80],
                                  [0xf8, 0x88, 0x80, 0x80, 0x80], [0x80, 0x80, 0x80],
                                  Array(repeating: 0xff, count: 9999)]
        for bytes in invalid {
            let viaCString = fromGChar(bytes)
            XCTAssertEqual(viaCString, String(decoding: bytes, as: UTF8.self))
            XCTAssertTrue(viaCString.unicodeScalars.contains("\u{fffd}"))
            assertWellFormed(tok.inputIds(viaCString), tok, "\(bytes.prefix(6))")
        }
        XCTAssertEqual(tok.inputIds(fromGChar([0x61, 0xff, 0x62])), tok.inputIds("a\u{fffd}b"))
    }

    /// Text encoding of the same prompts with the tiny pipeline: [P, 77, D], finite, and "" equals "   " (same ids;
    /// the embeddings agree to rounding, as rows of one batched GEMM may round differently).
    func testTextEncodingOfEdgeCasePrompts() throws {
        let pipe = try StableDiffusionPipeline(folder: Fixtures.url("tiny-sd1"))
        let prompts = ["", "   ", String(repeating: "a red circle ", count: 800), "a\u{0}😀\u{301}\u{fffd}"]
        let out = pipe.encode(prompts: prompts)
        XCTAssertEqual(out.shape, [4, 77, pipe.textEncoder.config.hiddenSize])
        XCTAssertTrue(out.array.allSatisfy(\.isFinite))
        let d = pipe.textEncoder.config.hiddenSize * 77
        XCTAssertEqual(pipe.tokenizer.inputIds(""), pipe.tokenizer.inputIds("   "))
        let a = out.array
        let diff = (0..<d).map { abs(a[$0] - a[d + $0]) }.max() ?? 0
        XCTAssertLessThan(diff, 1e-4, "\"\" and \"   \" encode differently")
    }

    /// A length below 2 (public API) no longer traps in `prefix(length - 2)`.
    func testShortLengthsDoNotTrap() {
        let tok = Self.clip
        XCTAssertEqual(tok.inputIds("a cat", length: 2), [tok.bos, tok.eos])
        XCTAssertEqual(tok.inputIds("a cat", length: 1), [tok.bos])
        XCTAssertEqual(tok.inputIds("a cat", length: 0), [])
    }
}
