import Foundation
@testable import EvalKit
import WindowEditor

/// Synthetic clips: a textured background and a square object moving by a fixed displacement per frame.
enum TestClips {
    static let palette: [String: [Int]] = ["red": [220, 30, 30], "blue": [30, 70, 220], "green": [30, 170, 50]]

    /// `frames` frames of `size`×`size`; the object (side `side`, colour red) starts at (`x0`, `y0`) and moves by
    /// (`dx`, `dy`) per frame.
    static func clip(frames: Int = 4, size: Int = 32, side: Int = 8, x0: Int = 6, y0: Int = 8, dx: Int = 2,
                     dy: Int = 1) -> EvalClip {
        var rgbFrames: [Frame] = [], masks: [Mask] = []
        for f in 0..<frames {
            var rgb = [UInt8](repeating: 0, count: size * size * 3), mask = [UInt8](repeating: 0, count: size * size)
            let ox = x0 + f * dx, oy = y0 + f * dy
            for y in 0..<size { for x in 0..<size {
                let i = y * size + x
                let inside = x >= ox && x < ox + side && y >= oy && y < oy + side
                let color = inside ? palette["red"]! : [(x * 7 + y * 3) % 256, (y * 11) % 256, ((x ^ y) * 5) % 256]
                for c in 0..<3 { rgb[3 * i + c] = UInt8(color[c]) }
                if inside { mask[i] = 255 }
            } }
            rgbFrames.append(Frame(format: .rgb, width: size, height: size, planes: [rgb]))
            masks.append(Mask(width: size, height: size, pixels: mask))
        }
        let displacements = (0..<frames).map { $0 == 0 ? [0, 0] : [dx, dy] }
        let meta = ClipMetadata(width: size, height: size, frames: frames, sourcePrompt: "a red square",
                                targetPrompt: "a blue square", editedObject: 0, sourceColor: "red", targetColor: "blue",
                                palette: palette, objects: [.init(color: "red", displacements: displacements)])
        return EvalClip(name: "clip-0000", meta: meta, frames: rgbFrames, masks: masks)
    }

    /// Writes `clip` as world.py does: clip.json, frames/NNNN.ppm, masks/NNNN.pgm.
    static func write(_ clip: EvalClip, to folder: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: folder.appendingPathComponent("frames"), withIntermediateDirectories: true)
        try fm.createDirectory(at: folder.appendingPathComponent("masks"), withIntermediateDirectories: true)
        let m = clip.meta
        let json: [String: Any] = [
            "width": m.width, "height": m.height, "fps": 8, "frames": m.frames, "source_prompt": m.sourcePrompt,
            "target_prompt": m.targetPrompt, "edited_object": m.editedObject, "source_color": m.sourceColor,
            "target_color": m.targetColor, "palette": m.palette,
            "objects": m.objects.map { ["shape": "square", "color": $0.color ?? "red", "size": 4.0,
                                        "positions": $0.displacements.map { _ in [0.0, 0.0] },
                                        "displacements": $0.displacements] as [String: Any] },
            "background": ["kind": "noise", "color": "gray", "velocity": [0, 0]] as [String: Any],
        ]
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted])
            .write(to: folder.appendingPathComponent("clip.json"))
        for f in 0..<m.frames {
            let name = String(format: "%04d", f)
            let rgb = NetPBMImage(width: m.width, height: m.height, channels: 3, pixels: clip.frames[f].planes[0])
            let gray = NetPBMImage(width: m.width, height: m.height, channels: 1, pixels: clip.masks[f].pixels)
            try NetPBM.write(rgb, to: folder.appendingPathComponent("frames/\(name).ppm"))
            try NetPBM.write(gray, to: folder.appendingPathComponent("masks/\(name).pgm"))
        }
    }

    static func temporaryFolder(_ prefix: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// `frame` with the pixels of `mask` (at 128) painted `color`.
    static func paint(_ frame: Frame, _ mask: Mask, _ color: [Int]) -> Frame {
        var out = frame
        for i in mask.pixels.indices where mask.pixels[i] >= 128 {
            for c in 0..<3 { out.planes[0][3 * i + c] = UInt8(color[c]) }
        }
        return out
    }
}
