import FactoryEngine
import FactoryModel
import Foundation

/// The image catalogue: one self-contained HTML page (no network resources) listing every golden
/// image, what it contains and which labs hold which version, so a lab owner can see what they get.
/// It replaces the original's GenerateImageList.
public enum CatalogRenderer {
    public struct Entry: Sendable {
        public var template: GoldenImageTemplate
        /// Lab name -> the image name it holds for this path (nil when it has none yet).
        public var labs: [(lab: String, location: String?, image: String?)]
        public var latestRecord: VhdRecord?
        /// Each gallery that publishes this image: its definition and newest version with per-region replication.
        public var galleries: [(gallery: String, definition: String, version: String?, regions: [RegionReplication])] = []
    }

    public static func entries(_ configuration: FactoryConfiguration, inventory: Inventory?) -> [Entry] {
        var recordsByPath: [String: VhdRecord] = [:]
        for record in inventory?.records ?? [] where (recordsByPath[record.imagePath]?.timestamp ?? .distantPast) < record.timestamp {
            recordsByPath[record.imagePath] = record
        }
        return configuration.templates.map { template in
            let labs = configuration.labs.filter { $0.images.contains(template.path) }.map { lab -> (String, String?, String?) in
                let observed = inventory?.lab(lab.key)
                let newest = observed?.images.filter { $0.tags[FactoryTag.imagePath].map(ImagePath.normalize) == template.path && $0.provisioningState == "Succeeded" }
                    .max { $0.createdAt < $1.createdAt }
                return (lab.labName, observed?.lab?.location ?? lab.location, newest?.id.name)
            }
            let galleries = configuration.galleries.filter { $0.subscribes(to: template.path) }.map { target -> (String, String, String?, [RegionReplication]) in
                let name = target.definition(for: template).name
                let definition = inventory?.gallery(target.key)?.definition(named: name)
                let newest = definition?.versions.filter { $0.tags[FactoryTag.imagePath].map(ImagePath.normalize) == template.path }
                    .max { VersionNumber($0.id.version) < VersionNumber($1.id.version) }
                return (target.galleryName, name, newest?.id.version, newest?.replication ?? [])
            }
            return Entry(template: template, labs: labs, latestRecord: recordsByPath[template.path], galleries: galleries)
        }
    }

    /// The table at the top of a long page: one row per image (OS, capture state, latest build,
    /// labs holding the latest image), each linked to its card.
    static func overview(_ entries: [Entry]) -> String {
        var h = "<table class=\"overview\" id=\"overview\">\n<tr><th>Image</th><th>OS</th><th>State</th><th>Latest build</th><th>Labs with the latest</th></tr>\n"
        for entry in entries {
            let t = entry.template
            let latest = entry.latestRecord
            let holding = entry.labs.filter { $0.image != nil && $0.image == latest?.imageName }.count
            h += "<tr><td><a href=\"#\(escape(t.imageName))\">\(escape(t.imageName))</a></td><td>\(t.osType.rawValue)</td><td>\(t.osState.rawValue)</td>"
            h += "<td>\(latest.map { escape(String(RecordTimestamp.format($0.timestamp).prefix(10)) + " · " + $0.imageName) } ?? "<span class=\"missing\">not built yet</span>")</td>"
            h += "<td>\(holding) of \(entry.labs.count)</td></tr>\n"
        }
        return h + "</table>\n"
    }

    public static func html(_ configuration: FactoryConfiguration, inventory: Inventory?, generatedAt: Date) -> String {
        let entries = entries(configuration, inventory: inventory)
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Golden image catalogue</title>
            <style>
            body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:2rem;color:#1b1f24;background:#f6f8fa}
            h1{font-size:1.6rem;margin:0 0 .2rem} .meta{color:#57606a;margin-bottom:1.5rem}
            .card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1rem 1.2rem;margin-bottom:1rem}
            .card h2{font-size:1.15rem;margin:0 0 .3rem} .path{font-family:ui-monospace,Menlo,Consolas,monospace;color:#57606a;font-size:.85rem}
            .badge{display:inline-block;border-radius:999px;padding:.05rem .6rem;font-size:.78rem;margin-right:.3rem;border:1px solid #d0d7de}
            .windows{background:#ddf4ff} .linux{background:#fff8c5} .generalized{background:#dafbe1} .specialized{background:#ffebe9}
            table{border-collapse:collapse;margin-top:.6rem;width:100%} th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eaeef2;font-size:.9rem}
            th{color:#57606a;font-weight:600} .overview{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin-bottom:1.5rem} .missing{color:#cf222e} ul{margin:.3rem 0 .3rem 1.2rem;padding:0}
            </style></head><body>
            <h1>Golden image catalogue</h1>
            <div class="meta">\(entries.count) golden image\(entries.count == 1 ? "" : "s") · configuration at \(escape(configuration.commit.map { String($0.prefix(12)) } ?? "working tree")) · generated \(escape(RecordTimestamp.format(generatedAt)))</div>

            """
        h += overview(entries)
        for entry in entries {
            let t = entry.template
            h += "<section class=\"card\" id=\"\(escape(t.imageName))\">\n"
            h += "<h2>\(escape(t.imageName))</h2>\n<div class=\"path\">\(escape(t.path))</div>\n<p>"
            h += "<span class=\"badge \(t.osType.rawValue.lowercased())\">\(t.osType.rawValue)</span>"
            h += "<span class=\"badge \(t.osState.rawValue)\">\(t.osState.rawValue)</span></p>\n"
            if !t.description.isEmpty { h += "<p>\(escape(t.description))</p>\n" }
            if let base = t.galleryImageReference {
                h += "<table><tr><th>Publisher</th><th>Offer</th><th>SKU</th><th>Version</th></tr>"
                h += "<tr><td>\(escape(base.publisher))</td><td>\(escape(base.offer))</td><td>\(escape(base.sku))</td><td>\(escape(base.version))</td></tr></table>\n"
            }
            h += "<p><strong>Artifacts applied</strong></p><ul>"
            let artifacts = t.factoryArtifacts
            if artifacts.isEmpty { h += "<li>none</li>" }
            for a in artifacts {
                let parameters = a.parameters.map { "\(escape($0.name))=\(escape($0.value))" }.joined(separator: ", ")
                h += "<li>\(escape(a.name))\(parameters.isEmpty ? "" : " <span class=\"path\">(\(parameters))</span>")</li>"
            }
            h += "</ul>\n"
            if let record = entry.latestRecord {
                h += "<p><strong>Latest build</strong>: \(escape(record.imageName)) · \(escape(RecordTimestamp.format(record.timestamp))) · commit \(escape(record.commit.map { String($0.prefix(12)) } ?? "-"))</p>\n"
            } else {
                h += "<p class=\"missing\"><strong>Not built yet.</strong></p>\n"
            }
            h += "<table><tr><th>Lab</th><th>Location</th><th>Current version</th></tr>"
            if entry.labs.isEmpty { h += "<tr><td colspan=\"3\">No lab subscribes to this image.</td></tr>" }
            for lab in entry.labs {
                let version = lab.image.map(escape) ?? "<span class=\"missing\">not delivered yet</span>"
                h += "<tr><td>\(escape(lab.lab))</td><td>\(escape(lab.location ?? "-"))</td><td>\(version)</td></tr>"
            }
            h += "</table>\n"
            if !entry.galleries.isEmpty {
                h += "<table><tr><th>Gallery</th><th>Image definition</th><th>Newest version</th><th>Regions</th></tr>"
                for g in entry.galleries {
                    let version = g.version.map(escape) ?? "<span class=\"missing\">not published yet</span>"
                    let regions = g.regions.map { "\(escape($0.region)) \($0.state.lowercased() == "completed" ? "✓" : escape($0.state.lowercased()))" }.joined(separator: ", ")
                    h += "<tr><td>\(escape(g.gallery))</td><td>\(escape(g.definition))</td><td>\(version)</td><td>\(regions.isEmpty ? "-" : regions)</td></tr>"
                }
                h += "</table>\n"
            }
            h += "</section>\n"
        }
        h += "</body></html>\n"
        return h
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
