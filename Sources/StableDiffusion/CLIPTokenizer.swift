import Foundation

/// The CLIP byte-level BPE tokenizer (tokenizer/vocab.json + merges.txt), as open_clip's SimpleTokenizer:
/// text cleaned (NFC, curly quotes and full-width forms straightened, HTML entities unescaped), whitespace
/// collapsed and stripped, lower-cased, split with CLIP's pattern, bytes mapped through `bytes_to_unicode`, BPE
/// with `</w>` on each word's last symbol, then BOS + at most 75 tokens + EOS, padded to 77.
public final class CLIPTokenizer {
    public let bos: Int32, eos: Int32, pad: Int32
    /// The largest id in the vocabulary (the text encoder's vocab_size must exceed it).
    public let maxId: Int32
    private let vocab: [String: Int32]
    private let ranks: [String: Int]
    private let byteEncoder: [String]
    /// A pad token that is an ordinary string (SD 2.x: "!") is a special token to transformers: it is matched in
    /// the text before BPE, as transformers' CLIPTokenizer does.
    private let specialPad: String?
    private var cache: [String: [Int32]] = [:]
    private let lock = NSLock()

    public init(folder: URL) throws {
        let vocabURL = folder.appendingPathComponent("vocab.json")
        let mergesURL = folder.appendingPathComponent("merges.txt")
        guard let vdata = FileManager.default.contents(atPath: vocabURL.path),
              let vobj = try? JSONSerialization.jsonObject(with: vdata) as? [String: Int] else {
            let found = FileManager.default.fileExists(atPath: vocabURL.path)
            throw ModelError("tokenizer: \(vocabURL.path): " + (found ? "not a JSON token→id map" : "file not found"),
                             kind: found ? .invalid : .notFound)
        }
        guard let mtext = try? String(contentsOf: mergesURL, encoding: .utf8) else {
            let found = FileManager.default.fileExists(atPath: mergesURL.path)
            throw ModelError("tokenizer: \(mergesURL.path): " + (found ? "not UTF-8 text" : "file not found"),
                             kind: found ? .invalid : .notFound)
        }
        if let (token, id) = vobj.first(where: { $0.value < 0 || $0.value > Int(Int32.max) }) {
            throw ModelError("tokenizer: \(vocabURL.path): token \(token.debugDescription.prefix(40)) has id \(id), "
                                 + "outside 0...\(Int32.max)")
        }
        vocab = vobj.mapValues { Int32($0) }
        var ranks: [String: Int] = [:]
        var rank = 0
        for line in mtext.split(separator: "\n", omittingEmptySubsequences: true) where !line.hasPrefix("#version") {
            let parts = line.split(separator: " ")
            guard parts.count == 2 else { continue }
            ranks[parts[0] + " " + parts[1]] = rank
            rank += 1
        }
        self.ranks = ranks
        byteEncoder = Self.bytesToUnicode()
        guard let b = vocab["<|startoftext|>"], let e = vocab["<|endoftext|>"] else {
            throw ModelError("tokenizer: \(vocabURL.path): no <|startoftext|>/<|endoftext|> tokens")
        }
        bos = b
        eos = e
        var padToken = "<|endoftext|>"
        for file in ["special_tokens_map.json", "tokenizer_config.json"] {
            if let d = FileManager.default.contents(atPath: folder.appendingPathComponent(file).path),
               let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any] {
                if let p = obj["pad_token"] as? String { padToken = p; break }
                if let p = (obj["pad_token"] as? [String: Any])?["content"] as? String { padToken = p; break }
            }
        }
        pad = vocab[padToken] ?? e
        maxId = vocab.values.max() ?? e
        specialPad = padToken.hasPrefix("<|") || vocab[padToken] == nil ? nil : padToken
    }

    /// GPT-2/CLIP's reversible byte → printable-character table.
    static func bytesToUnicode() -> [String] {
        var bs = Array(33...126) + Array(161...172) + Array(174...255)
        var cs = bs
        var n = 0
        for b in 0..<256 where !bs.contains(b) { bs.append(b); cs.append(256 + n); n += 1 }
        var table = [String](repeating: "", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = String(Character(Unicode.Scalar(c)!)) }
        return table
    }

    /// What open_clip's `basic_clean` + `whitespace_clean` + lower do to the prompts SD users write.
    static func clean(_ text: String) -> String {
        var s = text.precomposedStringWithCanonicalMapping
        s = unescapeHTML(unescapeHTML(s))
        var out = String.UnicodeScalarView()
        var lastSpace = true
        for var u in s.unicodeScalars {
            switch u.value {
            case 0x2018, 0x2019, 0x201A, 0x201B: u = "'"
            case 0x201C, 0x201D, 0x201E, 0x201F: u = "\""
            case 0xFF01...0xFF5E: u = Unicode.Scalar(u.value - 0xFEE0)!
            case 0x3000: u = " "
            default: break
            }
            if u.properties.isWhitespace {
                if !lastSpace { out.append(" ") }
                lastSpace = true
            } else if u.properties.generalCategory == .control {
                continue
            } else {
                out.append(u)
                lastSpace = false
            }
        }
        var cleaned = String(out)
        if cleaned.hasSuffix(" ") { cleaned.removeLast() }
        return cleaned.lowercased()
    }

    static func unescapeHTML(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var result = s
        let entities = [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&#39;", "'"), ("&apos;", "'"),
                        ("&nbsp;", "\u{a0}"), ("&amp;", "&")]
        for (entity, value) in entities {
            result = result.replacingOccurrences(of: entity, with: value)
        }
        return result
    }

    enum Kind { case letter, number, space, other }
    static func kind(_ u: Unicode.Scalar) -> Kind {
        if u.properties.isWhitespace { return .space }
        switch u.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    /// CLIP's pre-tokeniser: `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`.
    static func pretokenize(_ text: String) -> [String] {
        let u = Array(text.unicodeScalars)
        var words: [String] = []
        var i = 0
        func str(_ r: Range<Int>) -> String {
            var v = String.UnicodeScalarView(); v.append(contentsOf: u[r]); return String(v)
        }
        while i < u.count {
            if u[i] == "'" {
                let rest = u[(i + 1)...].prefix(2).map { Character($0) }
                let two = String(rest), one = rest.first.map { String($0) } ?? ""
                if ["re", "ve", "ll"].contains(two) { words.append("'" + two); i += 3; continue }
                if ["s", "t", "m", "d"].contains(one) { words.append("'" + one); i += 2; continue }
            }
            switch kind(u[i]) {
            case .space: i += 1
            case .number: words.append(str(i..<(i + 1))); i += 1
            case .letter:
                var j = i
                while j < u.count && kind(u[j]) == .letter { j += 1 }
                words.append(str(i..<j)); i = j
            case .other:
                var j = i
                while j < u.count && kind(u[j]) == .other { j += 1 }
                words.append(str(i..<j)); i = j
            }
        }
        return words
    }

    private func bpe(_ word: String) -> [Int32] {
        if let hit = lock.withLock({ cache[word] }) { return hit }
        var symbols = word.utf8.map { byteEncoder[Int($0)] }
        symbols[symbols.count - 1] += "</w>"
        while symbols.count > 1 {
            var best: (rank: Int, index: Int)? = nil
            for k in 0..<(symbols.count - 1) {
                if let r = ranks[symbols[k] + " " + symbols[k + 1]], r < (best?.rank ?? Int.max) { best = (r, k) }
            }
            guard let b = best else { break }
            let (first, second) = (symbols[b.index], symbols[b.index + 1])
            var merged: [String] = []
            var k = 0
            while k < symbols.count {
                if k < symbols.count - 1 && symbols[k] == first && symbols[k + 1] == second {
                    merged.append(first + second); k += 2
                } else {
                    merged.append(symbols[k]); k += 1
                }
            }
            symbols = merged
        }
        let ids = symbols.map { vocab[$0] ?? eos }
        // Words of ordinary length only, and a bounded cache: a long-running element sees many prompts.
        if word.utf8.count <= 64 {
            lock.withLock {
                if cache.count >= 100_000 { cache.removeAll(keepingCapacity: true) }
                cache[word] = ids
            }
        }
        return ids
    }

    /// BPE ids of `text`, without BOS/EOS.
    public func encode(_ text: String) -> [Int32] {
        let cleaned = Self.clean(text)
        guard let special = specialPad, cleaned.contains(special) else {
            return Self.pretokenize(cleaned).flatMap { bpe($0) }
        }
        let parts = cleaned.components(separatedBy: special)
        return parts.enumerated().flatMap { i, part in
            Self.pretokenize(part).flatMap { bpe($0) } + (i < parts.count - 1 ? [pad] : [])
        }
    }

    /// BOS + tokens (at most length − 2) + EOS, padded with the pad token to `length` (77 for SD). A longer text is
    /// truncated to its first length − 2 tokens, as transformers' CLIPTokenizer with `truncation=True` (what
    /// diffusers' pipelines use); an empty or blank text gives BOS, EOS and padding.
    public func inputIds(_ text: String, length: Int = 77) -> [Int32] {
        let tokens = encode(text).prefix(max(0, length - 2))
        var ids = [bos] + tokens + [eos]
        ids += Array(repeating: pad, count: max(0, length - ids.count))
        return Array(ids.prefix(max(0, length)))
    }
}
