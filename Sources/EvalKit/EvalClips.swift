// Evaluation clips as `Models/shapes-sd/train/world.py --seed S --clips N --out DIR` writes them:
//   DIR/clip-0000/clip.json         metadata and ground truth
//   DIR/clip-0000/frames/0000.ppm   RGB frames, binary PPM (P6, maxval 255)
//   DIR/clip-0000/masks/0000.pgm    mask of the edited object, binary PGM (P5), 0 or 255
// clip.json keys read here: width, height, frames, source_prompt, target_prompt, edited_object, source_color,
// target_color, palette {name: [r, g, b]}, objects [{displacements [[dx, dy] per frame]}], and in layout clips
// (world.py --layout: masks are label maps) region_words, region_colors, region_palette; others are ignored.
import Foundation
import WindowEditor

/// The parts of clip.json the evaluation uses.
public struct ClipMetadata: Decodable, Sendable {
    public struct Object: Decodable, Sendable {
        public var color: String?
        /// Per frame, whole pixels: frame f's object is frame f−1's moved by displacements[f]; the first is [0, 0].
        public var displacements: [[Int]]
    }

    public var width: Int, height: Int, frames: Int
    public var sourcePrompt: String, targetPrompt: String
    public var editedObject: Int
    public var sourceColor: String, targetColor: String
    public var palette: [String: [Int]]
    public var objects: [Object]
    /// Layout clips (mode=reatco): per label v = 1, 2, …, the words of the target prompt asked for in that region and
    /// their colour; the colours a region pixel's nearest colour is taken among. nil in colour-edit clips.
    public var regionWords: [String]?, regionColors: [String]?
    public var regionPalette: [String: [Int]]?

    /// A layout clip: the masks are label maps of regions.
    public var isLayout: Bool { regionWords != nil }

    enum CodingKeys: String, CodingKey {
        case width, height, frames, palette, objects
        case regionWords = "region_words", regionColors = "region_colors", regionPalette = "region_palette"
        case sourcePrompt = "source_prompt", targetPrompt = "target_prompt", editedObject = "edited_object"
        case sourceColor = "source_color", targetColor = "target_color"
    }

    /// The edited object's displacement into frame f, (0, 0) for the first frame.
    public func displacement(_ f: Int) -> (dx: Int, dy: Int) {
        let d = objects[editedObject].displacements[f]
        return (d[0], d[1])
    }

    /// Checks what the metrics rely on; throws an EvalError naming `source`.
    func validate(_ source: String) throws {
        func fail(_ what: String) -> EvalError { EvalError("\(source): \(what)") }
        guard width > 0, height > 0, frames > 0 else { throw fail("width, height and frames must be positive") }
        guard objects.indices.contains(editedObject) else {
            throw fail("edited_object \(editedObject) is not an index into objects (\(objects.count))")
        }
        let d = objects[editedObject].displacements
        guard d.count == frames, d.allSatisfy({ $0.count == 2 }) else {
            throw fail("the edited object needs \(frames) displacements of [dx, dy], found \(d.count)")
        }
        guard palette.values.allSatisfy({ $0.count == 3 }) else { throw fail("palette colours must be [r, g, b]") }
        for c in [sourceColor, targetColor] where palette[c] == nil {
            throw fail("colour '\(c)' is not in the palette (\(palette.keys.sorted().joined(separator: ", ")))")
        }
        if regionWords != nil || regionColors != nil || regionPalette != nil {
            guard let words = regionWords, let colors = regionColors, let regionPalette,
                  words.count == colors.count, !words.isEmpty, words.count < 256 else {
                throw fail("a layout clip needs region_words and region_colors of one length and region_palette")
            }
            guard regionPalette.values.allSatisfy({ $0.count == 3 }) else {
                throw fail("region_palette colours must be [r, g, b]")
            }
            for c in colors where regionPalette[c] == nil {
                throw fail("region colour '\(c)' is not in region_palette")
            }
        }
    }
}

/// One clip: metadata, RGB frames and the edited object's masks, all at width × height.
public struct EvalClip: Sendable {
    public var name: String
    public var meta: ClipMetadata
    public var frames: [Frame]
    public var masks: [Mask]

    public init(name: String, meta: ClipMetadata, frames: [Frame], masks: [Mask]) {
        self.name = name
        self.meta = meta
        self.frames = frames
        self.masks = masks
    }

    /// Loads `folder` (one clip: clip.json, frames/NNNN.ppm, masks/NNNN.pgm).
    public static func load(_ folder: URL) throws -> EvalClip {
        let json = folder.appendingPathComponent("clip.json")
        guard let data = FileManager.default.contents(atPath: json.path) else {
            throw EvalError("\(json.path): cannot read file")
        }
        let meta: ClipMetadata
        do { meta = try JSONDecoder().decode(ClipMetadata.self, from: data) } catch let e as DecodingError {
            throw EvalError("\(json.path): \(describe(e))")
        }
        try meta.validate(json.path)
        var frames: [Frame] = [], masks: [Mask] = []
        for f in 0..<meta.frames {
            let name = String(format: "%04d", f)
            let ppm = folder.appendingPathComponent("frames/\(name).ppm")
            let pgm = folder.appendingPathComponent("masks/\(name).pgm")
            let image = try NetPBM.read(ppm, expectChannels: 3), mask = try NetPBM.read(pgm, expectChannels: 1)
            for (url, im) in [(ppm, image), (pgm, mask)] where im.width != meta.width || im.height != meta.height {
                throw EvalError("\(url.path): \(im.width)x\(im.height), clip.json says \(meta.width)x\(meta.height)")
            }
            frames.append(Frame(format: .rgb, width: image.width, height: image.height, planes: [image.pixels]))
            masks.append(Mask(width: mask.width, height: mask.height, pixels: mask.pixels))
        }
        return EvalClip(name: folder.lastPathComponent, meta: meta, frames: frames, masks: masks)
    }

    /// The clip folders under `path` in sorted order, or `path` itself when it holds a clip.json.
    public static func folders(at path: String) throws -> [URL] {
        let url = URL(fileURLWithPath: path)
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDir), isDir.boolValue else {
            throw EvalError("\(path): no such folder")
        }
        if fm.fileExists(atPath: url.appendingPathComponent("clip.json").path) { return [url] }
        let names = (try? fm.contentsOfDirectory(atPath: url.path)) ?? []
        let clips = names.sorted().map { url.appendingPathComponent($0) }
            .filter { fm.fileExists(atPath: $0.appendingPathComponent("clip.json").path) }
        guard !clips.isEmpty else {
            throw EvalError("\(path): no clips (expected clip.json, or subfolders with one, as world.py --out writes)")
        }
        return clips
    }

    private static func describe(_ e: DecodingError) -> String {
        func path(_ c: DecodingError.Context) -> String {
            c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case let .keyNotFound(key, c):
            return "missing key '\(key.stringValue)'" + (c.codingPath.isEmpty ? "" : " in \(path(c))")
        case let .typeMismatch(_, c), let .valueNotFound(_, c):
            return "wrong type at \(path(c)): \(c.debugDescription)"
        case let .dataCorrupted(c):
            return c.codingPath.isEmpty ? "not valid JSON" : "bad value at \(path(c)): \(c.debugDescription)"
        @unknown default:
            return "\(e)"
        }
    }
}
