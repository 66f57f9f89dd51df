// What an input file holds, asked before its pipeline is built: a muxer given an audio pad waits for audio that
// never comes if the file has none (or none this machine decodes), so the audio branch is added only when
// GstDiscoverer finds a stream it can decode.
import CGStreamer
import CGstPbutils
import Foundation

enum AudioInInput: Equatable {
    case none
    /// An audio stream the installed plugins decode.
    case decodable(description: String)
    /// An audio stream without a decoder here, or a file the discoverer could not read; the reason in words.
    case unusable(String)
}

enum MediaProbe {
    /// The audio of the file at `path` (GStreamer initialised). Waits at most `timeout` seconds.
    static func audio(in path: String, timeout: Double = 30) -> AudioInInput {
        gst_pb_utils_init()
        var error: UnsafeMutablePointer<GError>?
        defer { if let error { g_error_free(error) } }
        guard let uri = gst_filename_to_uri(path, &error) else { return .unusable(message(error)) }
        defer { g_free(uri) }
        guard let discoverer = gst_discoverer_new(GstClockTime(timeout * 1e9), &error) else {
            return .unusable(message(error))
        }
        defer { g_object_unref(UnsafeMutableRawPointer(discoverer)) }
        guard let info = gst_discoverer_discover_uri(discoverer, uri, &error) else { return .unusable(message(error)) }
        defer { g_object_unref(UnsafeMutableRawPointer(info)) }
        let result = gst_discoverer_info_get_result(info)
        // A file the discoverer could not read at all: the pipeline will say why; no audio branch.
        guard result == GST_DISCOVERER_OK || result == GST_DISCOVERER_MISSING_PLUGINS,
              let streams = gst_discoverer_info_get_audio_streams(info) else { return .none }
        defer { gst_discoverer_stream_info_list_free(streams) }
        // The first audio stream (decodebin exposes it first), judged by itself: a missing decoder may be another
        // stream's.
        guard let caps = gst_discoverer_stream_info_get_caps(OpaquePointer(streams.pointee.data)) else {
            return .unusable("its format is unknown")
        }
        defer { gst_caps_unref(caps) }
        var description = "audio"
        if let text = gst_pb_utils_get_codec_description(caps) {
            description = String(cString: text)
            g_free(text)
        }
        guard hasDecoder(for: caps) else {
            return .unusable("no decoder for its \(description) is installed (gstreamer1.0-libav or "
                             + "gstreamer1.0-plugins-bad may have one)")
        }
        return .decodable(description: description)
    }

    /// Raw audio, or an installed decoder takes these caps on its sink pad.
    private static func hasDecoder(for caps: UnsafeMutablePointer<GstCaps>) -> Bool {
        if let structure = gst_caps_get_structure(caps, 0), String(cString: gst_structure_get_name(structure))
            == "audio/x-raw" {
            return true
        }
        // GST_ELEMENT_FACTORY_TYPE_DECODER is a macro Swift does not import: (1 << 0).
        let decoders = gst_element_factory_list_get_elements(GstElementFactoryListType(1), GST_RANK_MARGINAL)
        defer { gst_plugin_feature_list_free(decoders) }
        let fitting = gst_element_factory_list_filter(decoders, caps, GST_PAD_SINK, 0)
        defer { gst_plugin_feature_list_free(fitting) }
        return fitting != nil
    }

    private static func message(_ error: UnsafeMutablePointer<GError>?) -> String {
        error.map { String(cString: $0.pointee.message) } ?? "unknown error"
    }
}
