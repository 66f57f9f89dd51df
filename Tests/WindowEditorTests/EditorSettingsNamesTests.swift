import XCTest
@testable import WindowEditor

/// The name → setting table: every field round-trips its default, rejects bad and out-of-range values, and writes
/// its own field only.
final class EditorSettingsNamesTests: XCTestCase {
    let defaults = EditorSettings()

    func testCoversEverySetting() {
        let names = EditorSettings.fields.map(\.name)
        XCTAssertEqual(Set(names).count, names.count, "names are unique")
        XCTAssertEqual(names.count, Mirror(reflecting: defaults).children.count,
                       "one field per EditorSettings property")
        for name in ["steps", "guidance-scale", "strength", "seed", "mask-threshold", "processing-size", "ocd-sampling",
                     "blend-step", "background-steps", "inversion-iterations", "blend-threshold", "keyframe-interval",
                     "preserve-background", "context-margin", "tome-ratio", "tome-foreground-weight", "tome-frames",
                     "cross-frame", "feather", "negative-prompt", "model", "prompt", "source-prompt", "mode"] {
            XCTAssertNotNil(EditorSettings.field(named: name), name)
        }
    }

    func testEveryNameParsesItsDefault() throws {
        for f in EditorSettings.fields {
            var s = defaults
            try f.set(&s, from: f.value(in: defaults))
            XCTAssertEqual(s, defaults, f.name)
        }
    }

    /// A value other than the default changes exactly this field (no two entries write one property).
    func testEachFieldWritesItsOwnSetting() throws {
        for f in EditorSettings.fields {
            let other: String
            switch f.kind {
            case let .int(r, m):
                other = "\(f.value(in: defaults) == "\(r.upperBound)" ? r.lowerBound : r.upperBound / m * m)"
            case let .double(r): other = "\(f.value(in: defaults) == "\(r.upperBound)" ? r.lowerBound : r.upperBound)"
            case let .uint64(r): other = "\(r.upperBound)"
            case .bool: other = f.value(in: defaults) == "true" ? "false" : "true"
            case .string: other = "something"
            case let .choice(c): other = c.first { $0 != f.value(in: defaults) }!
            }
            var s = defaults
            try f.set(&s, from: other)
            XCTAssertEqual(f.value(in: s), other, f.name)
            for g in EditorSettings.fields where g.name != f.name {
                XCTAssertEqual(g.value(in: s), g.value(in: defaults), "setting \(f.name) changed \(g.name)")
            }
        }
    }

    func testRejectsOutOfRangeAndMalformed() {
        for f in EditorSettings.fields {
            var bad: [String]
            switch f.kind {
            case let .int(r, m):
                bad = ["\(r.lowerBound - 1)", "\(r.upperBound + 1)", "1.5", "x", ""]
                if m > 1 { bad.append("\(r.lowerBound + 1)") }
            case let .double(r): bad = ["\(r.lowerBound - 0.01)", "\(r.upperBound + 0.01)", "nan", "inf", "x"]
            case let .uint64(r): bad = ["-1", "\(r.upperBound + 1)", "x"]
            case .bool: bad = ["maybe", "", "2"]
            case .string: bad = []
            case .choice: bad = ["bogus", ""]
            }
            for text in bad {
                var s = defaults
                XCTAssertThrowsError(try f.set(&s, from: text), "\(f.name) accepted '\(text)'") { error in
                    XCTAssertTrue(error is WindowEditError)
                    XCTAssertTrue("\(error)".hasPrefix("\(f.name): "), "\(error)")
                }
                XCTAssertEqual(s, defaults, "a rejected value leaves the settings alone")
            }
        }
    }

    func testSetByName() throws {
        var s = EditorSettings()
        try s.set("cross-frame", to: "all")
        try s.set("guidance-scale", to: "3.5")
        try s.set("preserve-background", to: "no")
        try s.set("prompt", to: "")
        XCTAssertEqual(s.crossFrame, .all)
        XCTAssertEqual(s.guidanceScale, 3.5)
        XCTAssertFalse(s.preserveBackground)
        XCTAssertNil(s.prompt)
        XCTAssertThrowsError(try s.set("window-size", to: "8")) { error in
            XCTAssertTrue("\(error)".contains("unknown setting 'window-size'"))
            XCTAssertTrue("\(error)".contains("tome-ratio"), "lists the valid names")
        }
        XCTAssertThrowsError(try s.set("processing-size", to: "96")) {
            XCTAssertTrue("\($0)".contains("multiple of 64"))
        }
    }

    /// The presets: `default` is the element's defaults; `reference` is FateZero's configuration as documented,
    /// every setting within its property's range, and differs from the defaults in those settings only.
    func testPresets() throws {
        XCTAssertEqual(EditorPreset.default.settings, defaults)
        let r = EditorPreset.reference.settings
        XCTAssertEqual(r.mode, .baseline)
        XCTAssertEqual(r.steps, 50)
        XCTAssertEqual(r.strength, 1)
        XCTAssertEqual(r.guidanceScale, 7.5)
        XCTAssertFalse(r.negativeFromSource)
        XCTAssertEqual(r.unconditionalPrompt, "")
        XCTAssertEqual(r.crossFrame, .firstPrevious)
        XCTAssertFalse(r.preserveBackground)
        XCTAssertEqual(r.attentionReuse, 0)
        XCTAssertEqual(r.deepCacheInterval, 1)
        XCTAssertEqual(r.jointMargin, -1)
        var changed: Set<String> = []
        for f in EditorSettings.fields {
            var s = defaults
            try f.set(&s, from: f.value(in: r))   // in range: the table's parser accepts it
            if f.value(in: r) != f.value(in: defaults) { changed.insert(f.name) }
        }
        XCTAssertEqual(changed, ["mode", "steps", "strength", "guidance-scale", "negative-from-source",
                                 "deep-cache-interval", "preserve-background", "joint-margin"])
        // no-savings: the defaults at the same steps with every saving off, nothing else.
        let n = EditorPreset.noSavings.settings
        let savings = EditorSettings.fields.filter { $0.value(in: n) != $0.value(in: defaults) }.map(\.name)
        XCTAssertEqual(Set(savings), ["mode", "ocd-sampling", "tome-ratio", "deep-cache-interval", "joint-margin",
                                      "decode-margin"])
        XCTAssertEqual(n.mode, .baseline)
        XCTAssertEqual(n.deepCacheInterval, 1)
        XCTAssertEqual(n.jointMargin, -1)
    }
}
