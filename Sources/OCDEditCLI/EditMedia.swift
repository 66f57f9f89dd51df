// What `ocdedit edit` reads and writes: a video file or a PNG sequence in, a video file or a PNG pattern out, each
// as the gst-launch fragment that reads or writes it. Paths never go into the description text: the runner sets
// `location` on the named elements afterwards (no quoting rules to get wrong).
import Foundation

struct EditError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A PNG sequence: a printf pattern (`frames/%04d.png`) and the consecutive indices that exist.
struct PNGSequence: Equatable {
    var pattern: String
    var first: Int
    var last: Int
    var count: Int { last - first + 1 }

    /// `path` is a folder of numbered PNG frames (`0001.png`, `frame-07.png`, …: one run of digits before `.png`,
    /// the same prefix and width) or a pattern with one `%d`/`%0Nd`; nil if it is neither.
    static func find(_ path: String) throws -> PNGSequence? {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            return try folder(path)
        }
        guard path.contains("%") else { return nil }
        guard path.lowercased().hasSuffix(".png") else {
            throw EditError("\(path): a frame pattern must name PNG files (e.g. frames/%04d.png)")
        }
        func exists(_ i: Int) -> Bool { FileManager.default.fileExists(atPath: String(format: path, i)) }
        guard let first = (0...1).first(where: exists) else {
            throw EditError("\(path): no frame at index 0 or 1")
        }
        var last = first
        while exists(last + 1) { last += 1 }
        return PNGSequence(pattern: path, first: first, last: last)
    }

    private static func folder(_ path: String) throws -> PNGSequence {
        let names = try FileManager.default.contentsOfDirectory(atPath: path)
            .filter { $0.lowercased().hasSuffix(".png") }.sorted()
        guard let name = names.first else { throw EditError("\(path): no PNG files in this folder") }
        let stem = name.dropLast(4)
        let digits = stem.reversed().prefix { $0.isNumber }.count
        guard digits > 0, let first = Int(stem.suffix(digits)) else {
            throw EditError("\(path): PNG names must end in a frame number (e.g. 0001.png), not \(name)")
        }
        let pattern = URL(fileURLWithPath: path)
            .appendingPathComponent("\(stem.dropLast(digits))%0\(digits)d\(name.suffix(4))").path
        var last = first
        while FileManager.default.fileExists(atPath: String(format: pattern, last + 1)) { last += 1 }
        if last - first + 1 != names.count {
            throw EditError("\(path): \(names.count) PNG files, but only \(last - first + 1) numbered in one run "
                            + "from \(name)")
        }
        return PNGSequence(pattern: pattern, first: first, last: last)
    }
}

/// An input stream (the video or the mask): a media file any installed demuxer/decoder reads, or PNG frames.
enum EditSource {
    case file(String)
    case png(PNGSequence)

    static func at(_ path: String, what: String) throws -> EditSource {
        if let sequence = try PNGSequence.find(path) { return .png(sequence) }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            throw EditError("\(what) \(path): no such file")
        }
        return .file(path)
    }

    /// Frames in the stream when the command can tell without decoding (PNG sequences).
    var knownFrames: Int? {
        if case let .png(s) = self { return s.count }
        return nil
    }

    /// Raw video in `format` from a source element named `name` (its location set later); a file's decodebin is
    /// named `name`-dec, so its audio can be taken too (`audioBranch`).
    func description(name: String, format: String, fps: String) -> String {
        switch self {
        case .file:
            return "filesrc name=\(name) ! decodebin name=\(name)-dec ! videoconvert ! video/x-raw,format=\(format)"
        case let .png(s):
            return "multifilesrc name=\(name) index=\(s.first) start-index=\(s.first) stop-index=\(s.last) "
                + "caps=image/png,framerate=\(fps) ! pngdec ! videoconvert ! video/x-raw,format=\(format)"
        }
    }

    var location: String {
        switch self {
        case let .file(path): return path
        case let .png(s): return s.pattern
        }
    }
}

/// Where the edit goes, chosen by the output's name: .webm (VP8/WebM), .mkv (VP8/Matroska), .mp4 (H.264 with
/// x264enc from gst-plugins-ugly), or a PNG pattern (`out/frame-%05d.png`).
enum EditSink: Equatable {
    case webm, mkv, mp4
    case png(pattern: String)

    static func forOutput(_ path: String) throws -> EditSink {
        let lower = path.lowercased()
        if lower.hasSuffix(".png") {
            guard path.contains("%") else {
                throw EditError("output \(path): PNG output needs a frame pattern, e.g. out/frame-%05d.png")
            }
            return .png(pattern: path)
        }
        if lower.hasSuffix(".webm") { return .webm }
        if lower.hasSuffix(".mkv") { return .mkv }
        if lower.hasSuffix(".mp4") { return .mp4 }
        throw EditError("output \(path): unknown kind; give a .webm, .mkv or .mp4 file or a PNG pattern "
                        + "(frame-%05d.png)")
    }

    /// GStreamer elements this sink needs, and the package that ships them (for the error when one is missing).
    var requiredElements: [(element: String, package: String)] {
        switch self {
        case .webm: return [("vp8enc", "gstreamer1.0-plugins-good"), ("webmmux", "gstreamer1.0-plugins-good")]
        case .mkv: return [("vp8enc", "gstreamer1.0-plugins-good"), ("matroskamux", "gstreamer1.0-plugins-good")]
        case .mp4: return [("x264enc", "gstreamer1.0-plugins-ugly"), ("mp4mux", "gstreamer1.0-plugins-good")]
        case .png: return [("pngenc", "gstreamer1.0-plugins-good"), ("multifilesink", "gstreamer1.0-plugins-good")]
        }
    }

    /// The encoder the input's audio is re-encoded with for this container (Opus in WebM and Matroska, MP3 in
    /// MP4: both from Debian's base/good plugins, AAC's are not); nil for PNG frames, which carry no audio.
    var audioEncoder: (element: String, package: String)? {
        switch self {
        case .webm, .mkv: return ("opusenc", "gstreamer1.0-plugins-base")
        case .mp4: return ("lamemp3enc", "gstreamer1.0-plugins-good")
        case .png: return nil
        }
    }

    /// The audio of the decodebin named `decoder`, encoded into this sink's muxer (named `mux` by `description`).
    /// The muxer takes audio only as far as edited video has come, a window or more behind; the queue before it
    /// has no limit, so waiting audio (compressed, about 8 kB a second) never pushes back on the demuxer that also
    /// feeds the video. (decodebin's multiqueue grows its audio side while the video side runs dry, so a bounded
    /// queue did not stall either in a test of 64-frame windows at 5 fps: 12.8 s of audio ahead.)
    func audioBranch(decoder: String) -> String? {
        guard let encoder = audioEncoder?.element else { return nil }
        return "\(decoder). ! audioconvert ! audioresample ! \(encoder) "
            + "! queue max-size-buffers=0 max-size-bytes=0 max-size-time=0 ! mux."
    }

    /// From raw video to a sink element named `name` (its location set later); `startIndex` numbers PNG frames.
    func description(name: String, startIndex: Int) -> String {
        // VP8 at constrained quality 10 (the bitrate only caps it); H.264 in 4:2:0 so every player decodes it.
        let vp8 = "videoconvert ! vp8enc deadline=1 end-usage=cq cq-level=10 target-bitrate=20000000"
        switch self {
        case .webm: return "\(vp8) ! webmmux name=mux ! filesink name=\(name)"
        case .mkv: return "\(vp8) ! matroskamux name=mux ! filesink name=\(name)"
        case .mp4:
            return "videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=medium "
                + "! mp4mux name=mux ! filesink name=\(name)"
        case .png: return "videoconvert ! pngenc ! multifilesink name=\(name) index=\(startIndex)"
        }
    }
}

/// The model folder to use without --model: Models/shapes-sd of the repository the binary was built in, or of the
/// current directory or one above it.
func defaultModelFolder() -> String? {
    var starts = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
    starts.append(URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent())
    for start in starts {
        var dir = start
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent("Models/shapes-sd")
            if FileManager.default.fileExists(atPath: candidate.appendingPathComponent("model_index.json").path) {
                return candidate.path
            }
            dir = dir.deletingLastPathComponent()
        }
    }
    return nil
}

/// The model's native image side (UNet `sample_size` × the VAE's downscale), as a processing size the element
/// takes (a multiple of 64, at least 64); nil if the configs do not say.
func nativeProcessingSize(modelFolder: String) -> Int? {
    func json(_ part: String) -> [String: Any]? {
        let url = URL(fileURLWithPath: modelFolder).appendingPathComponent(part).appendingPathComponent("config.json")
        guard let data = try? Data(contentsOf: url) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
    }
    guard let unet = json("unet"), let vae = json("vae") else { return nil }
    let sample = (unet["sample_size"] as? Int) ?? (unet["sample_size"] as? [Int])?.first
    guard let sample, let blocks = (vae["block_out_channels"] as? [Int])?.count, blocks > 0 else { return nil }
    let native = sample << (blocks - 1)
    return max(64, native / 64 * 64)
}
