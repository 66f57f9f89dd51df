// Plugin entry point. The GStreamer loader derives the symbol name from the file name:
// libgstocdedit.so -> gst_plugin_ocdedit_get_desc (docs/gstreamer.md).
import CGStreamer
import CGstShim

/// C strings that must outlive the process (plugin descriptor, element metadata, enum nicks).
func staticCString(_ s: String) -> UnsafePointer<gchar> { UnsafePointer(strdup(s)!) }

private let pluginInit: GstPluginInitFunc = { plugin in
    _ = Log.category // registered with the plugin, so `gst-launch-1.0 --gst-debug-help` lists it
    return gst_element_register(plugin, "ocdedit", UInt32(GST_RANK_NONE.rawValue), OCDEditType.type)
}

nonisolated(unsafe) private let pluginDesc: UnsafeMutablePointer<GstPluginDesc> = {
    let desc = UnsafeMutablePointer<GstPluginDesc>.allocate(capacity: 1)
    desc.initialize(to: GstPluginDesc(
        major_version: 1, minor_version: 22,
        name: staticCString("ocdedit"),
        description: staticCString("Object-centric diffusion video editing (Stable Diffusion 1.x on the CPU)"),
        plugin_init: pluginInit,
        version: staticCString("0.1.0"),
        license: staticCString("MIT/X11"),
        source: staticCString("ocdedit"),
        package: staticCString("ocdedit"),
        origin: staticCString("https://example.invalid/ocdedit"),
        release_datetime: staticCString("2026-11-22"),
        _gst_reserved: (nil, nil, nil, nil)))
    return desc
}()

@_cdecl("gst_plugin_ocdedit_get_desc")
public func gst_plugin_ocdedit_get_desc() -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer(pluginDesc)
}
