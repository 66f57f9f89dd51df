import Foundation

/// A `config.json` read as a dictionary, with typed accessors that fall back to the class defaults of diffusers.
public struct JSONConfig: @unchecked Sendable {
    public let values: [String: Any]
    public let source: String

    public init(url: URL) throws {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw ModelError("\(url.path): file not found", kind: .notFound)
        }
        guard let obj = try? JSONSerialization.jsonObject(with: data), let dict = obj as? [String: Any] else {
            throw ModelError("\(url.path): not a JSON object")
        }
        values = dict
        source = url.path
    }

    public init(_ values: [String: Any], source: String = "config") {
        self.values = values
        self.source = source
    }

    private func present(_ key: String) -> Any? {
        guard let v = values[key], !(v is NSNull) else { return nil }
        return v
    }
    public func int(_ key: String, _ fallback: Int) -> Int { (present(key) as? NSNumber)?.intValue ?? fallback }
    public func double(_ key: String, _ fallback: Double) -> Double {
        (present(key) as? NSNumber)?.doubleValue ?? fallback
    }
    public func bool(_ key: String, _ fallback: Bool) -> Bool { (present(key) as? NSNumber)?.boolValue ?? fallback }
    public func string(_ key: String, _ fallback: String) -> String { (present(key) as? String) ?? fallback }
    public func strings(_ key: String, _ fallback: [String]) -> [String] { (present(key) as? [String]) ?? fallback }
    public func ints(_ key: String, _ fallback: [Int]) -> [Int] {
        (present(key) as? [NSNumber])?.map(\.intValue) ?? fallback
    }
    /// An int or a per-block list (e.g. `attention_head_dim`), expanded to `count` entries; nil when absent.
    public func intOrList(_ key: String, count: Int) -> [Int]? {
        if let list = present(key) as? [NSNumber] { return list.map(\.intValue) }
        if let n = present(key) as? NSNumber { return Array(repeating: n.intValue, count: count) }
        return nil
    }
    public func has(_ key: String) -> Bool { present(key) != nil }
}
