// GObject properties of ocdedit, registered from one table: `window-size` (the element's) and every field of
// `EditorSettings.fields` (WindowEditor), whose names, blurbs, ranges and defaults (`EditorSettings()`) are the only
// copy. gst-inspect-1.0 shows them; the README's table is checked against them (ElementTests).
import CGStreamer
import CGstShim
import WindowEditor

private let readWrite = GParamFlags(rawValue: G_PARAM_READABLE.rawValue | G_PARAM_WRITABLE.rawValue)
/// GST_PARAM_MUTABLE_PLAYING (1 << (G_PARAM_USER_SHIFT + 4)): the property may change while PLAYING;
/// a change applies from the next window on.
private let mutablePlaying = GParamFlags(rawValue: readWrite.rawValue | (1 << 12))

/// One property: how to declare it and how to move it between `Settings` and a GValue.
struct PropertyDefinition {
    let name: String
    let makeSpec: () -> UnsafeMutablePointer<GParamSpec>
    /// Throws (leaving `Settings` unchanged) when the table refuses a value GObject's range let through, e.g. a
    /// processing-size that is not a multiple of 64.
    let set: (inout Settings, UnsafePointer<GValue>) throws -> Void
    let get: (Settings, UnsafeMutablePointer<GValue>) -> Void
    /// The value as text, for the debug log.
    let show: (Settings) -> String
    /// Read-only properties: the value comes from what the element counted, not from the settings.
    var status: ((ElementStatus, UnsafeMutablePointer<GValue>) -> Void)?
}

/// What read-only properties report (counted by the element since start).
struct ElementStatus {
    var windowsLate = 0
}

/// "cross-frame" → "Cross frame" (GObject wants a nick; the blurb says what the property does).
private func nick(_ name: String) -> String {
    let words = name.replacingOccurrences(of: "-", with: " ")
    return words.prefix(1).uppercased() + words.dropFirst()
}

/// A GEnum type registered once per process from the choice's names (value = index, name = nick = the text).
private func registerEnum(_ typeName: String, _ names: [String]) -> GType {
    let existing = g_type_from_name(typeName)
    if existing != 0 { return existing }
    let values = UnsafeMutablePointer<GEnumValue>.allocate(capacity: names.count + 1)
    for (i, n) in names.enumerated() {
        values[i] = GEnumValue(value: gint(i), value_name: staticCString(n), value_nick: staticCString(n))
    }
    values[names.count] = GEnumValue(value: 0, value_name: nil, value_nick: nil)
    return g_enum_register_static(typeName, values)
}

extension PropertyDefinition {
    /// `window-size`, the one property that is not an editor setting.
    static let windowSize: PropertyDefinition = {
        let r = WindowSizeSetting.range
        return PropertyDefinition(name: WindowSizeSetting.name, makeSpec: {
            g_param_spec_int(WindowSizeSetting.name, nick(WindowSizeSetting.name), WindowSizeSetting.blurb,
                             gint(r.lowerBound), gint(r.upperBound), gint(WindowSizeSetting.defaultValue),
                             mutablePlaying)
        }, set: { s, v in s.windowSize = Int(g_value_get_int(v)) },
           get: { s, v in g_value_set_int(v, gint(s.windowSize)) },
           show: { "\($0.windowSize)" })
    }()

    /// An editor setting: GObject values go through the field's text form (`set(from:)`, `value(in:)`), so the table's
    /// checks and messages apply to properties too. Swift's number descriptions round-trip exactly.
    init(field f: EditorSettingField) {
        let name = f.name, blurb = f.blurb
        let defaultText = f.value(in: EditorSettings())
        let makeSpec: () -> UnsafeMutablePointer<GParamSpec>
        let text: (UnsafePointer<GValue>) -> String
        let store: (UnsafeMutablePointer<GValue>, String) -> Void
        switch f.kind {
        case let .int(r, _):
            makeSpec = { g_param_spec_int(name, nick(name), blurb, gint(r.lowerBound), gint(r.upperBound),
                                          gint(Int(defaultText)!), mutablePlaying) }
            text = { "\(g_value_get_int($0))" }
            store = { g_value_set_int($0, gint(Int($1)!)) }
        case let .double(r):
            makeSpec = { g_param_spec_double(name, nick(name), blurb, r.lowerBound, r.upperBound,
                                             Double(defaultText)!, mutablePlaying) }
            text = { "\(g_value_get_double($0))" }
            store = { g_value_set_double($0, Double($1)!) }
        case let .uint64(r):
            makeSpec = { g_param_spec_uint64(name, nick(name), blurb, guint64(r.lowerBound), guint64(r.upperBound),
                                             guint64(defaultText)!, mutablePlaying) }
            text = { "\(g_value_get_uint64($0))" }
            store = { g_value_set_uint64($0, guint64($1)!) }
        case .bool:
            makeSpec = { g_param_spec_boolean(name, nick(name), blurb, defaultText == "true" ? 1 : 0, mutablePlaying) }
            text = { g_value_get_boolean($0) != 0 ? "true" : "false" }
            store = { g_value_set_boolean($0, $1 == "true" ? 1 : 0) }
        case let .string(optional):
            // An optional string's unset value is NULL (shown by gst-inspect as null), the empty text in the table.
            let stringDefault = optional && defaultText.isEmpty ? nil : defaultText
            makeSpec = { g_param_spec_string(name, nick(name), blurb, stringDefault, mutablePlaying) }
            text = { g_value_get_string($0).map { String(cString: $0) } ?? "" }
            store = { g_value_set_string($0, optional && $1.isEmpty ? nil : $1) }
        case let .choice(names):
            let typeName = "GstOCDEdit" + name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }
                .joined()
            makeSpec = { g_param_spec_enum(name, nick(name), blurb, registerEnum(typeName, names),
                                           gint(names.firstIndex(of: defaultText)!), mutablePlaying) }
            text = { v in
                let i = Int(g_value_get_enum(v))
                return names.indices.contains(i) ? names[i] : ""
            }
            store = { g_value_set_enum($0, gint(names.firstIndex(of: $1) ?? 0)) }
        }
        self.init(name: name, makeSpec: makeSpec,
                  set: { s, v in try f.set(&s.editor, from: text(v)) },
                  get: { s, v in store(v, f.value(in: s.editor)) },
                  show: { f.value(in: $0.editor) })
    }
}

extension PropertyDefinition {
    /// Live mode and EOS (LiveSettings.swift).
    static let live: [PropertyDefinition] = {
        func choice<E: RawRepresentable & CaseIterable & Equatable>(_ name: String, _ blurb: String, _ defaultValue: E,
                                                                     _ kp: WritableKeyPath<LiveSettings, E>)
            -> PropertyDefinition where E.RawValue == String {
            let cases = Array(E.allCases), names = cases.map(\.rawValue)
            let typeName = "GstOCDEdit" + name.split(separator: "-").map { $0.prefix(1).uppercased() + $0.dropFirst() }
                .joined()
            return PropertyDefinition(name: name, makeSpec: {
                g_param_spec_enum(name, nick(name), blurb, registerEnum(typeName, names),
                                  gint(cases.firstIndex(of: defaultValue)!), mutablePlaying)
            }, set: { s, v in
                let i = Int(g_value_get_enum(v))
                if cases.indices.contains(i) { s.live[keyPath: kp] = cases[i] }
            }, get: { s, v in g_value_set_enum(v, gint(cases.firstIndex(of: s.live[keyPath: kp])!)) },
               show: { $0.live[keyPath: kp].rawValue })
        }
        let latency = ProcessingLatencySetting.self
        return [
            PropertyDefinition(name: LiveSetting.name, makeSpec: {
                g_param_spec_boolean(LiveSetting.name, nick(LiveSetting.name), LiveSetting.blurb,
                                     LiveSetting.defaultValue ? 1 : 0, mutablePlaying)
            }, set: { s, v in s.live.forceLive = g_value_get_boolean(v) != 0 },
               get: { s, v in g_value_set_boolean(v, s.live.forceLive ? 1 : 0) },
               show: { "\($0.live.forceLive)" }),
            PropertyDefinition(name: latency.name, makeSpec: {
                g_param_spec_int(latency.name, nick(latency.name), latency.blurb, gint(latency.range.lowerBound),
                                 gint(latency.range.upperBound), gint(latency.defaultValue), mutablePlaying)
            }, set: { s, v in s.live.processingLatencyMs = Int(g_value_get_int(v)) },
               get: { s, v in g_value_set_int(v, gint(s.live.processingLatencyMs)) },
               show: { "\($0.live.processingLatencyMs)" }),
            choice(LatePolicy.name, LatePolicy.blurb, LatePolicy.defaultValue, \.latePolicy),
            choice(EOSPolicy.name, EOSPolicy.blurb, EOSPolicy.defaultValue, \.eosPolicy),
            PropertyDefinition(name: WindowsLateCounter.name, makeSpec: {
                g_param_spec_int(WindowsLateCounter.name, nick(WindowsLateCounter.name), WindowsLateCounter.blurb,
                                 0, gint.max, 0, G_PARAM_READABLE)
            }, set: { _, _ in }, get: { _, _ in }, show: { _ in "" },
               status: { status, v in g_value_set_int(v, gint(clamping: status.windowsLate)) }),
        ]
    }()
}

/// Property ids are the index in this table + 1.
let propertyTable: [PropertyDefinition] = [.windowSize] + EditorSettings.fields.map(PropertyDefinition.init(field:))
    + PropertyDefinition.live
