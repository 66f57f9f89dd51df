import Foundation

/// A `config.json` read as a dictionary, with typed accessors. A key that is absent (or `null`) falls back to the
/// class default of diffusers/transformers; a key that is present with the wrong type is an error naming the key,
/// the type expected and the file (`source`, the absolute path). `required…` accessors have no fallback: they are
/// for keys that fix the layout of the weights, where a default would only move the error to a shape mismatch.
public struct JSONConfig: @unchecked Sendable {
    public let values: [String: Any]
    /// The file's absolute path (or a label for configs built in memory).
    public let source: String

    public init(url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelError("\(url.path): file not found", kind: .notFound)
        }
        try self.init(data: data, source: url.path)
    }

    /// Parses the bytes of a `config.json` (`source` names it in errors). Fuzzed by `Fuzz/FuzzConfig`.
    public init(data: Data, source: String) throws {
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw ModelError("\(source): not a JSON object (corrupt or not a config.json)")
        }
        values = dict
        self.source = source
    }

    public init(_ values: [String: Any], source: String = "config") {
        self.values = values
        self.source = source
    }

    private func present(_ key: String) -> Any? {
        guard let v = values[key], !(v is NSNull) else { return nil }
        return v
    }

    /// What a JSON value is, for error messages.
    static func describe(_ v: Any) -> String {
        switch v {
        case let s as String: return "a string \"\(s.prefix(40))\""
        case is [Any]: return "an array"
        case is [String: Any]: return "an object"
        case let n as NSNumber: return "the number \(n)"
        default: return "a \(type(of: v))"
        }
    }

    func wrongType(_ key: String, expected: String, found v: Any) -> ModelError {
        ModelError("\(source): wrong type for key '\(key)': expected \(expected), found \(Self.describe(v))")
    }

    /// Whether `v` is a JSON `true`/`false` (Foundation on Linux lets `1 as? Bool` succeed, so look at the type).
    static func isBool(_ v: Any) -> Bool {
        if type(of: v) == Bool.self { return true }
        guard let n = v as? NSNumber else { return false }
        return String(cString: n.objCType) == "c"
    }

    /// The exact integer `v` holds: integer literals in Int's range, or numbers written with a fraction or exponent
    /// whose value is a whole number up to ±2^53; nil for anything else (fractions, larger values, non-numbers).
    public static func exactInt(_ v: Any) -> Int? {
        if let i = v as? Int, type(of: v) == Int.self { return i }
        guard let n = v as? NSNumber, !isBool(v) else { return nil }
        switch String(cString: n.objCType) {
        case "q", "l", "i", "s": return Int(exactly: n.int64Value)
        case "Q", "L", "I", "S": return Int(exactly: n.uint64Value)
        default: break
        }
        let d = n.doubleValue
        guard d.isFinite, abs(d) <= 9_007_199_254_740_992, let i = Int(exactly: d) else { return nil }
        return i
    }

    public func int(_ key: String, _ fallback: Int) throws -> Int {
        guard let v = present(key) else { return fallback }
        guard let i = Self.exactInt(v) else { throw wrongType(key, expected: "an integer", found: v) }
        return i
    }

    public func double(_ key: String, _ fallback: Double) throws -> Double {
        guard let v = present(key) else { return fallback }
        guard let n = v as? NSNumber, !Self.isBool(v), n.doubleValue.isFinite else {
            throw wrongType(key, expected: "a number", found: v)
        }
        return n.doubleValue
    }

    public func bool(_ key: String, _ fallback: Bool) throws -> Bool {
        guard let v = present(key) else { return fallback }
        if Self.isBool(v), let b = v as? Bool { return b }
        throw wrongType(key, expected: "true or false", found: v)
    }

    public func string(_ key: String, _ fallback: String) throws -> String {
        guard let v = present(key) else { return fallback }
        guard let s = v as? String else { throw wrongType(key, expected: "a string", found: v) }
        return s
    }

    public func strings(_ key: String, _ fallback: [String]) throws -> [String] {
        guard let v = present(key) else { return fallback }
        guard let list = v as? [Any], let s = list as? [String] else {
            throw wrongType(key, expected: "an array of strings", found: v)
        }
        return s
    }

    public func ints(_ key: String, _ fallback: [Int]) throws -> [Int] {
        guard let v = present(key) else { return fallback }
        guard let list = v as? [Any] else { throw wrongType(key, expected: "an array of ints", found: v) }
        let ints = list.compactMap(Self.exactInt)
        guard ints.count == list.count else { throw wrongType(key, expected: "an array of ints", found: v) }
        return ints
    }

    public func doubles(_ key: String) throws -> [Double]? {
        guard let v = present(key) else { return nil }
        guard let list = v as? [Any] else { throw wrongType(key, expected: "an array of numbers", found: v) }
        let numbers = list.compactMap { ($0 as? NSNumber).flatMap { $0.doubleValue.isFinite ? $0.doubleValue : nil } }
        guard numbers.count == list.count, !list.contains(where: Self.isBool) else {
            throw wrongType(key, expected: "an array of numbers", found: v)
        }
        return numbers
    }

    private func missing(_ key: String, _ example: String) -> ModelError {
        ModelError("\(source): missing key '\(key)' (required: \(example))")
    }

    /// An array of ints that must be present (e.g. `block_out_channels`); `example` says what it looks like.
    public func requiredInts(_ key: String, example: String) throws -> [Int] {
        guard has(key) else { throw missing(key, example) }
        return try ints(key, [])
    }

    /// An array of strings that must be present (e.g. `down_block_types`).
    public func requiredStrings(_ key: String, example: String) throws -> [String] {
        guard has(key) else { throw missing(key, example) }
        return try strings(key, [])
    }

    /// An int or a per-block list (e.g. `attention_head_dim`), expanded to `count` entries; nil when absent.
    public func intOrList(_ key: String, count: Int) throws -> [Int]? {
        guard let v = present(key) else { return nil }
        if v is [Any] { return try ints(key, []) }
        guard let n = Self.exactInt(v) else {
            throw wrongType(key, expected: "an integer or an array of ints", found: v)
        }
        return Array(repeating: n, count: count)
    }

    public func has(_ key: String) -> Bool { present(key) != nil }

    /// Throws unless every value of `key` (already read as `values`) lies in `range`.
    public func check(_ key: String, _ values: [Int], in range: ClosedRange<Int>) throws {
        guard let bad = values.first(where: { !range.contains($0) }) else { return }
        throw ModelError("\(source): key '\(key)' has value \(bad), outside \(range.lowerBound)...\(range.upperBound)")
    }
}
