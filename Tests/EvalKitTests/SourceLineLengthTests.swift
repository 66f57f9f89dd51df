import Foundation
import XCTest

/// House style (issue 11): no line of the project's own sources, tests, scripts or Makefile is longer than 120
/// columns, counted in Unicode characters. Generated data under Tests/Fixtures (json, safetensors, vocab) is not
/// checked; its generator script is.
final class SourceLineLengthTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let limit = 120

    /// (folder, recursive, file extensions) relative to the repository root; plus the Makefile.
    static let fileSets: [(folder: String, recursive: Bool, extensions: Set<String>)] = [
        ("Sources", true, ["swift", "py", "c", "h"]),
        ("Tests", true, ["swift", "py"]),
        ("Benchmarks", false, ["sh", "py"]),
        ("Pipelines", false, ["sh"]),
        ("Models/shapes-sd/train", false, ["py"]),
        ("Plugin", true, ["swift", "c", "h", "sh", "py"]),
        ("Fuzz", true, ["swift", "h", "sh"]),
        ("Reliability", false, ["sh", "py"]),
    ]

    static func checkedFiles() -> [String] {
        let fm = FileManager.default
        var paths: [String] = []
        for set in fileSets {
            let folder = root.appendingPathComponent(set.folder)
            guard fm.fileExists(atPath: folder.path) else { continue }
            let relative: [String]
            if set.recursive {
                relative = (fm.enumerator(atPath: folder.path)?.allObjects as? [String]) ?? []
            } else {
                relative = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
            }
            for name in relative where set.extensions.contains((name as NSString).pathExtension) {
                // Build products (Plugin/lib, any nested .build) are not sources.
                if name.hasPrefix(".build/") || name.contains("/.build/") || name.hasPrefix("lib/") { continue }
                paths.append(set.folder + "/" + name)
            }
        }
        paths.append("Makefile")
        return paths.sorted()
    }

    /// `path:line (N columns)` for every line over the limit.
    static func longLines(in paths: [String]) throws -> [String] {
        var found: [String] = []
        for path in paths {
            let text = try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
            // Unicode scalars, not bytes or graphemes (a "\r\n" pair is one Character but still ends a line).
            for (i, line) in text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let columns = line.count
                if columns > limit { found.append("\(path):\(i + 1) (\(columns) columns)") }
            }
        }
        return found
    }

    func testNoLineLongerThan120Columns() throws {
        let paths = Self.checkedFiles()
        XCTAssertTrue(paths.contains("Sources/TensorKernels/Tensor.swift"),
                      "source files not found under \(Self.root.path)")
        XCTAssertTrue(paths.contains("Makefile"))
        XCTAssertGreaterThan(paths.count, 50)
        let long = try Self.longLines(in: paths)
        XCTAssert(long.isEmpty, "\(long.count) line(s) over \(Self.limit) columns:\n" + long.joined(separator: "\n"))
    }
}
