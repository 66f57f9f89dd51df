// Frames and masks as the element hands them to an editor: tightly packed planes (no row padding).

public enum PixelFormat: String, Sendable, CaseIterable {
    case rgb = "RGB", rgba = "RGBA", bgrx = "BGRx", i420 = "I420"
}

/// One video frame. Packed formats have one plane of width*bytesPerPixel bytes per row;
/// I420 has Y (width×height), U and V ((width+1)/2 × (height+1)/2).
public struct Frame: Sendable, Equatable {
    public var format: PixelFormat
    public var width: Int
    public var height: Int
    public var planes: [[UInt8]]

    public init(format: PixelFormat, width: Int, height: Int, planes: [[UInt8]]) {
        self.format = format
        self.width = width
        self.height = height
        self.planes = planes
    }
}

/// A GRAY8 saliency/foreground mask: 0 = background, 255 = foreground.
public struct Mask: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height, "mask of \(width)x\(height) needs \(width * height) bytes")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The whole frame is foreground (the documented fallback when no mask is linked).
    public static func full(width: Int, height: Int) -> Mask {
        Mask(width: width, height: height, pixels: [UInt8](repeating: 255, count: width * height))
    }
}

public struct EditCancelled: Error {
    public init() {}
}

/// A one-line error about the editor's settings or input that a user can act on.
public struct WindowEditError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Edits one window: `frames.count == masks.count`, every mask already at the frame's size.
/// Returns exactly one frame per input frame, same format and size. Throws `EditCancelled`
/// when `isCancelled()` turns true (flush/seek), or an error whose description a user can act on.
public protocol WindowEditing: AnyObject {
    func edit(frames: [Frame], masks: [Mask], isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame]
    /// The same with `context` frames (window-overlap, WindowOverlap.swift) edited at the head of the window: they
    /// take part in the edit (the window's frames may attend to them) but only `frames`' edits are returned, one per
    /// frame, in order. Default: `context` and `frames` edited as one window, the context's outputs dropped.
    func edit(frames: [Frame], masks: [Mask], context: WindowContext,
              isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame]
}

extension WindowEditing {
    public func edit(frames: [Frame], masks: [Mask], context: WindowContext,
                     isCancelled: @escaping @Sendable () -> Bool) throws -> [Frame] {
        guard !context.isEmpty else { return try edit(frames: frames, masks: masks, isCancelled: isCancelled) }
        let out = try edit(frames: context.frames + frames, masks: context.masks + masks, isCancelled: isCancelled)
        return Array(out.suffix(frames.count))
    }
}
