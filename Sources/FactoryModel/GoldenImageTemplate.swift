import Foundation

/// Windows or Linux, as DevTest Labs and galleries spell it.
public enum OSType: String, Codable, Sendable, CaseIterable {
    case windows = "Windows"
    case linux = "Linux"

    public init?(caseInsensitive raw: String) {
        guard let match = OSType.allCases.first(where: { $0.rawValue.lowercased() == raw.lowercased() }) else { return nil }
        self = match
    }

    /// The artifact that generalizes a VM of this OS before capture.
    public var generalizeArtifact: String { self == .windows ? "windows-sysprep" : "linux-deprovision" }
}

/// Generalized (sysprep / deprovision, reusable) or specialized (snapshot as is) capture.
public enum OSState: String, Codable, Sendable, CaseIterable {
    case generalized
    case specialized

    public init?(caseInsensitive raw: String) {
        guard let match = OSState.allCases.first(where: { $0.rawValue == raw.lowercased() }) else { return nil }
        self = match
    }
}

/// The marketplace image a golden image starts from.
public struct GalleryImageReference: Codable, Sendable, Equatable, Hashable {
    public var publisher: String
    public var offer: String
    public var sku: String
    public var osType: String
    public var version: String

    public init(publisher: String, offer: String, sku: String, osType: String, version: String = "latest") {
        self.publisher = publisher
        self.offer = offer
        self.sku = sku
        self.osType = osType
        self.version = version
    }
}

/// One artifact a golden-image VM applies, as written in the template.
public struct ArtifactReference: Codable, Sendable, Equatable, Hashable {
    /// The artifact id as written (often an ARM `resourceId(...)` expression).
    public var artifactId: String
    /// The artifact's short name (`windows-chrome`), derived from the id.
    public var name: String
    /// Parameters as `name -> value` (values rendered as JSON text when not strings).
    public var parameters: [ArtifactParameter]

    public init(artifactId: String, name: String? = nil, parameters: [ArtifactParameter] = []) {
        self.artifactId = artifactId
        self.name = name ?? ArtifactReference.shortName(of: artifactId)
        self.parameters = parameters
    }

    /// The short artifact name of an id: the last quoted argument of a `resourceId(...)`
    /// expression, or the last path segment of a plain resource id.
    public static func shortName(of artifactId: String) -> String {
        if artifactId.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) {
            // Printable ASCII (every byte its own Character): the same rules over bytes, without splitting.
            return shortNameASCII(Array(artifactId.utf8))
        }
        if artifactId.contains("resourceId") {
            let parts = artifactId.split(separator: "'", omittingEmptySubsequences: false)
            // Quoted arguments sit at odd indexes.
            let quoted = parts.enumerated().filter { $0.offset % 2 == 1 }.map { String($0.element) }
            if let last = quoted.last, !last.isEmpty { return last }
        }
        let trimmed = artifactId.trimmingCharacters(in: CharacterSet(charactersIn: "[]/ "))
        return trimmed.split(separator: "/").last.map(String.init) ?? trimmed
    }

    /// `shortName` for printable ASCII: the last quoted argument of a `resourceId(...)` expression
    /// (the part after the last quote when the quotes are unbalanced), else the last path segment
    /// with `[`, `]`, `/` and spaces trimmed.
    private static func shortNameASCII(_ bytes: [UInt8]) -> String {
        let quote = UInt8(ascii: "'")
        let marker = Array("resourceId".utf8)
        var hasMarker = false
        if bytes.count >= marker.count {
            for start in 0...(bytes.count - marker.count) where bytes[start] == marker[0] {
                if bytes[start..<start + marker.count].elementsEqual(marker) { hasMarker = true; break }
            }
        }
        if hasMarker {
            let quotes = bytes.indices.filter { bytes[$0] == quote }
            if !quotes.isEmpty {
                // Parts between quotes: part k follows quote k; the quoted parts have odd k.
                let k = quotes.count % 2 == 1 ? quotes.count : quotes.count - 1
                let start = quotes[k - 1] + 1
                let end = k < quotes.count ? quotes[k] : bytes.count
                if end > start { return String(decoding: bytes[start..<end], as: UTF8.self) }
            }
        }
        let trim: Set<UInt8> = [UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "/"), UInt8(ascii: " ")]
        var low = 0, high = bytes.count
        while low < high && trim.contains(bytes[low]) { low += 1 }
        while high > low && trim.contains(bytes[high - 1]) { high -= 1 }
        var segmentStart = low
        var lastSegment: Range<Int>? = nil
        for i in low..<high where bytes[i] == UInt8(ascii: "/") {
            if i > segmentStart { lastSegment = segmentStart..<i }
            segmentStart = i + 1
        }
        if high > segmentStart { lastSegment = segmentStart..<high }
        return String(decoding: bytes[lastSegment ?? low..<high], as: UTF8.self)
    }
}

public struct ArtifactParameter: Codable, Sendable, Equatable, Hashable {
    public var name: String
    public var value: String
    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

/// A golden-image template: an ARM deployment template with a DevTest Labs VM resource,
/// plus what the factory derives from it (identity, names, capture mode).
public struct GoldenImageTemplate: Codable, Sendable, Equatable {
    /// Path relative to `GoldenImages/`, with `/` (e.g. `Win2016/Datacenter.json`).
    public var path: String
    /// Git blob SHA of the template file: identity for provenance and change detection.
    public var blobSha: String
    public var osType: OSType
    public var osState: OSState
    /// Factory VM name (Windows computer-name rules: at most 15 characters).
    public var vmName: String
    /// Image base name, e.g. `Win2016_Datacenter`; a date suffix is added at capture.
    public var imageName: String
    /// `properties.notes`, used as the image description.
    public var description: String
    public var galleryImageReference: GalleryImageReference?
    public var artifacts: [ArtifactReference]
    /// The VM size the template asks for when it is a literal (not a parameter).
    public var vmSize: String?
    /// The template text, deployed as is with the factory's parameters.
    public var templateJSON: Data
    /// What `metadata.imageFactory` says about the template's gallery image definition (nil: nothing,
    /// every value derived; see `GalleryTarget.definition(for:)`).
    public var galleryImage: GalleryImageMetadata?
    /// Data disks the lab VM asks for in `properties.dataDiskParameters`: their count, 1 when that is
    /// an ARM expression (at least one assumed), nil when none. Azure Lab Services takes single-disk
    /// images only, so a Lab Services gallery warns about these templates.
    public var requestedDataDisks: Int?

    public init(path: String, blobSha: String, osType: OSType, osState: OSState, vmName: String, imageName: String,
                description: String, galleryImageReference: GalleryImageReference?, artifacts: [ArtifactReference],
                vmSize: String? = nil, templateJSON: Data, galleryImage: GalleryImageMetadata? = nil, requestedDataDisks: Int? = nil) {
        self.path = path
        self.blobSha = blobSha
        self.osType = osType
        self.osState = osState
        self.vmName = vmName
        self.imageName = imageName
        self.description = description
        self.galleryImageReference = galleryImageReference
        self.artifacts = artifacts
        self.vmSize = vmSize
        self.templateJSON = templateJSON
        self.galleryImage = galleryImage
        self.requestedDataDisks = requestedDataDisks
    }

    /// The artifacts the factory VM gets: the template's, plus the generalize artifact
    /// (`windows-sysprep` / `linux-deprovision`) for a generalized image unless already last.
    public var factoryArtifacts: [ArtifactReference] {
        guard osState == .generalized else { return artifacts }
        let finisher = osType.generalizeArtifact
        if artifacts.last?.name.lowercased() == finisher { return artifacts }
        return artifacts + [ArtifactReference(
            artifactId: "/artifactsources/public repo/artifacts/\(finisher)", name: finisher)]
    }
}

/// What the template parser finds before names are assigned across the whole set.
struct ParsedTemplate {
    var osType: OSType
    var osState: OSState?
    var explicitVMName: String?
    var description: String
    var galleryImageReference: GalleryImageReference?
    var artifacts: [ArtifactReference]
    var vmSize: String?
    var galleryImage: GalleryImageMetadata?
    var requestedDataDisks: Int?
}

/// Reads the parts of an ARM template the factory needs and reports what is wrong with it.
enum TemplateParser {
    static let labVMType = "microsoft.devtestlab/labs/virtualmachines"

    static func parse(_ object: Any, file: String, lines: LineIndex) -> (ParsedTemplate?, [Diagnostic]) {
        guard let root = object as? [String: Any] else {
            return (nil, [.error("The template is not a JSON object.", file: file, line: 1,
                                 hint: "A golden image is an ARM deployment template: { \"resources\": [ ... ] }.")])
        }
        guard let resources = JSONText.value(root, "resources") as? [Any] else {
            return (nil, [.error("The template has no \"resources\" array.", file: file, line: 1,
                                 hint: "Add a Microsoft.DevTestLab/labs/virtualmachines resource.")])
        }
        let vm = resources.lazy.compactMap { $0 as? [String: Any] }.first { r in
            (JSONText.value(r, "type") as? String)?.lowercased() == labVMType
        }
        guard let vm else {
            return (nil, [.error("The template has no Microsoft.DevTestLab/labs/virtualmachines resource.", file: file,
                                 line: lines.locate("\"resources\"")?.line,
                                 hint: "A golden image template deploys one lab VM; see Configuration/GoldenImages for examples.")])
        }
        let vmLine = lines.locate("Microsoft.DevTestLab/labs/virtualmachines")?.line
            ?? lines.locate("virtualmachines")?.line
        guard let properties = JSONText.value(vm, "properties") as? [String: Any] else {
            return (nil, [.error("The lab VM resource has no \"properties\" object.", file: file, line: vmLine)])
        }
        var diagnostics: [Diagnostic] = []
        var reference: GalleryImageReference?
        var osTypeText: String?
        if let gallery = JSONText.value(properties, "galleryImageReference") as? [String: Any] {
            func s(_ key: String) -> String { (JSONText.value(gallery, key) as? String) ?? "" }
            osTypeText = JSONText.value(gallery, "osType") as? String
            reference = GalleryImageReference(publisher: s("publisher"), offer: s("offer"), sku: s("sku"),
                                              osType: s("osType"), version: s("version").isEmpty ? "latest" : s("version"))
            for key in ["publisher", "offer", "sku"] where s(key).isEmpty {
                diagnostics.append(.error("galleryImageReference.\(key) is missing or not a string.", file: file,
                                          line: lines.locate("galleryImageReference")?.line))
            }
        } else if JSONText.value(properties, "customImageId") == nil {
            diagnostics.append(.error("The lab VM has neither galleryImageReference nor customImageId.", file: file, line: vmLine,
                                      hint: "Give properties.galleryImageReference {publisher, offer, sku, osType, version}."))
        }
        if osTypeText == nil { osTypeText = JSONText.value(properties, "osType") as? String }
        guard let osTypeText, let osType = OSType(caseInsensitive: osTypeText) else {
            let found = osTypeText.map { "\"\($0)\"" } ?? "nothing"
            diagnostics.append(.error("The lab VM has no valid osType (found \(found)).", file: file,
                                      line: lines.locate("\"osType\"")?.line ?? vmLine,
                                      hint: "Set properties.galleryImageReference.osType to \"Windows\" or \"Linux\"."))
            return (nil, diagnostics)
        }
        var artifacts: [ArtifactReference] = []
        if let rawArtifacts = JSONText.value(properties, "artifacts") {
            if let list = rawArtifacts as? [Any] {
                for (i, item) in list.enumerated() {
                    guard let a = item as? [String: Any], let id = JSONText.value(a, "artifactId") as? String, !id.isEmpty else {
                        diagnostics.append(.error("artifacts[\(i)] has no artifactId string.", file: file,
                                                  line: lines.locate("\"artifacts\"")?.line))
                        continue
                    }
                    var parameters: [ArtifactParameter] = []
                    if let ps = JSONText.value(a, "parameters") as? [Any] {
                        for p in ps.compactMap({ $0 as? [String: Any] }) {
                            let name = (JSONText.value(p, "name") as? String) ?? ""
                            parameters.append(ArtifactParameter(name: name, value: render(JSONText.value(p, "value"))))
                        }
                    }
                    artifacts.append(ArtifactReference(artifactId: id, parameters: parameters))
                }
            } else if let expression = rawArtifacts as? String {
                // An ARM expression the factory cannot read: the VM would be built without its artifacts.
                diagnostics.append(.error("properties.artifacts is the expression \(expression.prefix(80)); the factory must read the artifacts to apply and report them.",
                                          file: file, line: lines.locate("\"artifacts\"")?.line,
                                          hint: "Write the artifacts as an array of { \"artifactId\": ... } objects in the template."))
            } else {
                diagnostics.append(.error("properties.artifacts must be an array.", file: file,
                                          line: lines.locate("\"artifacts\"")?.line))
            }
        }
        var osState: OSState?
        var explicitName: String?
        var galleryImage: GalleryImageMetadata?
        if let metadata = JSONText.value(root, "metadata") as? [String: Any],
           let factory = JSONText.value(metadata, "imageFactory") as? [String: Any] {
            if let raw = JSONText.value(factory, "osState") {
                if let text = raw as? String, let state = OSState(caseInsensitive: text) {
                    osState = state
                } else {
                    diagnostics.append(.error("metadata.imageFactory.osState must be \"generalized\" or \"specialized\".", file: file,
                                              line: lines.locate("\"osState\"")?.line))
                }
            }
            if let raw = JSONText.value(factory, "vmName") {
                if let text = raw as? String { explicitName = text } else {
                    diagnostics.append(.error("metadata.imageFactory.vmName must be a string.", file: file,
                                              line: lines.locate("\"vmName\"")?.line))
                }
            }
            galleryImage = galleryImageMetadata(factory, file: file, lines: lines, diagnostics: &diagnostics)
        }
        let notes = (JSONText.value(properties, "notes") as? String) ?? ""
        var size = JSONText.value(properties, "size") as? String
        if let s = size, s.hasPrefix("[") { size = nil }
        var parsed = ParsedTemplate(osType: osType, osState: osState, explicitVMName: explicitName, description: notes,
                                    galleryImageReference: reference, artifacts: artifacts, vmSize: size)
        parsed.galleryImage = galleryImage
        parsed.requestedDataDisks = requestedDataDisks(properties)
        return (diagnostics.hasErrors ? nil : parsed, diagnostics)
    }

    private static func render(_ value: Any?) -> String {
        switch value {
        case nil: return ""
        case let s as String: return s
        case let n as NSNumber: return n.stringValue
        case let other?:
            if let data = try? JSONSerialization.data(withJSONObject: other, options: [.sortedKeys, .fragmentsAllowed]),
               let text = String(data: data, encoding: .utf8) { return text }
            return "\(other)"
        }
    }
}
