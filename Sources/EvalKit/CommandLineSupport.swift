// Text front-end helpers shared by the `ocdedit eval` and `generate` commands: editor settings given as
// `--property value` options (through `EditorSettings.fields`), and one-line JSON objects with ordered keys.
import Foundation
import WindowEditor

public enum SettingArguments {
    /// Applies `--name value` / `--name=value` tokens (as ArgumentParser leaves unrecognised options) to `settings`
    /// through `EditorSettings.fields`, accepting only the fields in `allowed`. A bool field given bare (followed by
    /// nothing or by another `--option`) is set to true. A later occurrence of a name wins. Returns the names set.
    /// Throws a WindowEditError (bad value, from the table) or an EvalError (unknown name, missing value).
    @discardableResult
    public static func apply(_ tokens: [String], to settings: inout EditorSettings,
                             allowed: [String]) throws -> Set<String> {
        var set = Set<String>()
        var i = 0
        while i < tokens.count {
            let token = tokens[i]
            i += 1
            guard token.hasPrefix("--"), token.count > 2 else {
                throw EvalError("unexpected argument '\(token)' (editor settings are given as --name value)")
            }
            var name = String(token.dropFirst(2)), value: String? = nil
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard allowed.contains(name), let field = EditorSettings.field(named: name) else {
                throw EvalError("unknown option '--\(name)'; editor settings: \(allowed.joined(separator: ", "))")
            }
            if value == nil {
                if i < tokens.count && !tokens[i].hasPrefix("--") {
                    value = tokens[i]
                    i += 1
                } else if field.kind == .bool {
                    value = "true"
                } else {
                    throw EvalError("--\(name) needs a value (\(field.values))")
                }
            }
            try field.set(&settings, from: value!)
            set.insert(name)
        }
        return set
    }

    /// "--name <values>" and "blurb (default d)" lines for help texts; `defaultText` replaces a field's default.
    public static func help(_ names: [String], defaults: EditorSettings = EditorSettings(),
                            defaultText: [String: String] = [:]) -> String {
        names.compactMap { EditorSettings.field(named: $0) }.map { f in
            let d = defaultText[f.name] ?? f.value(in: defaults)
            return "  --\(f.name) <\(f.values)>\n        \(f.blurb)" + (d.isEmpty ? "" : " (default \(d))")
        }.joined(separator: "\n")
    }
}

/// A JSON value of the commands' last output line.
public enum JSONValue: Equatable, Sendable {
    case int(Int)
    /// nil and non-finite numbers are written as null.
    case number(Double?)
    case string(String)
    case array([JSONValue])
    case null

    var text: String {
        switch self {
        case let .int(v): return "\(v)"
        case let .number(v):
            guard let v, v.isFinite else { return "null" }
            return v == v.rounded() && abs(v) < 1e15 ? String(format: "%.1f", v) : "\(v)"
        case let .string(s): return JSONValue.quote(s)
        case let .array(a): return "[" + a.map(\.text).joined(separator: ", ") + "]"
        case .null: return "null"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// One JSON object on one line, keys in the given order.
    public static func object(_ fields: [(String, JSONValue)]) -> String {
        "{" + fields.map { "\(quote($0.0)): \($0.1.text)" }.joined(separator: ", ") + "}"
    }
}
