import Foundation

/// A lab that receives images, from one entry of `Labs.json`.
public struct TargetLab: Codable, Sendable, Equatable {
    public var subscriptionId: String
    /// Absent in older `Labs.json` files: the backend then finds the lab by name in the subscription.
    public var resourceGroup: String?
    public var labName: String
    /// Optional extension: where `local init` creates the lab (Azure reports the real one).
    public var location: String?
    /// The ImagePaths as written, normalized to `/`.
    public var imagePaths: [String]
    /// The template paths those ImagePaths resolve to, sorted.
    public var images: [String]
    /// 1-based line of the entry in Labs.json, for diagnostics.
    public var line: Int?

    public init(subscriptionId: String, resourceGroup: String?, labName: String, location: String? = nil,
                imagePaths: [String], images: [String] = [], line: Int? = nil) {
        self.subscriptionId = subscriptionId
        self.resourceGroup = resourceGroup
        self.labName = labName
        self.location = location
        self.imagePaths = imagePaths
        self.images = images
        self.line = line
    }

    /// Lab identity ignoring case, as Azure compares names.
    public var key: String { "\(subscriptionId.lowercased())/\(labName.lowercased())" }

    /// What Azure would refuse in this entry: its subscription id, lab name or resource group name.
    public var azureNameProblems: [String] {
        var problems: [String] = []
        if let p = Naming.subscriptionIdProblem(subscriptionId) { problems.append("SubscriptionId \"\(Naming.printable(subscriptionId))\" \(p)") }
        if let p = Naming.labNameProblem(labName) { problems.append("LabName \"\(Naming.printable(labName))\" \(p)") }
        if let resourceGroup, let p = Naming.resourceGroupProblem(resourceGroup) {
            problems.append("ResourceGroup \"\(Naming.printable(resourceGroup))\" \(p)")
        }
        return problems
    }

    /// Whether this Labs.json entry names the lab `id`: same subscription and name, and the same
    /// resource group when the entry gives one (names compared ignoring case, as Azure does).
    public func identifies(_ id: LabID) -> Bool {
        subscriptionId.lowercased() == id.subscriptionId.lowercased() && labName.lowercased() == id.name.lowercased()
            && (resourceGroup.map { $0.lowercased() == id.resourceGroup.lowercased() } ?? true)
    }

    /// Whether this lab subscribes to an image path (segment-aware; case-insensitive as Azure tags are).
    public func subscribes(to templatePath: String) -> Bool {
        images.contains(templatePath) || imagePaths.contains { ImagePath.covers($0, templatePath, ignoringCase: true) }
    }
}

/// The whole validated configuration at one revision: what every later stage plans from.
public struct FactoryConfiguration: Sendable {
    public var commit: String?
    public var configDirectory: String
    public var settings: FactorySettings
    public var labs: [TargetLab]
    /// The Azure Compute Galleries of Labs.json's optional `Galleries` array (empty without one).
    public var galleries: [GalleryTarget] = []

    /// Labs.json entries whose names Azure would refuse, as errors with their lines: `plan`, `run`
    /// and every command that plans refuse to go on (exit 2) before anything is read or written.
    public var azureNameErrors: [Diagnostic] {
        let file = configDirectory.isEmpty ? ConfigurationLoader.labsFile : configDirectory + "/" + ConfigurationLoader.labsFile
        return labs.flatMap { lab in
            lab.azureNameProblems.map {
                Diagnostic.error("\(lab.labName.isEmpty ? "A lab" : "Lab \(Naming.printable(lab.labName))"): \($0).", file: file, line: lab.line,
                                 hint: "Use the lab's real subscription id, resource group and name; Azure refuses this one.")
            }
        }
    }
    public var templates: [GoldenImageTemplate]
    public var diagnostics: [Diagnostic]
    /// Digest of every configuration file (path and blob SHA): a saved plan is refused when it
    /// changed, even in the working tree where there is no commit to compare.
    public var digest: String = ""

    public var isValid: Bool { !diagnostics.hasErrors }

    public func template(at path: String) -> GoldenImageTemplate? {
        templates.first { $0.path == path }
    }
}

/// Reads and validates a configuration snapshot, collecting every problem at once.
public enum ConfigurationLoader {
    public static let labsFile = "Labs.json"
    public static let goldenImagesFolder = "GoldenImages"

    /// Loads and validates. Never throws: problems are diagnostics in the result.
    /// `settingsLayers` are the environment and command-line layers, applied over the settings file.
    public static func load(_ snapshot: ConfigSnapshot, settingsLayers: [SettingsLayer] = []) -> FactoryConfiguration {
        var diagnostics = snapshot.notes
        let labsPath = snapshot.displayPath(labsFile)
        let prefix = goldenImagesFolder + "/"

        // Settings file first, so its defaults (e.g. osState) apply to templates.
        var layers: [SettingsLayer] = []
        if let file = snapshot.files.first(where: { $0.path.lowercased() == FactorySettings.fileName.lowercased() }) {
            let display = snapshot.displayPath(file.path)
            if let parsed = parseJSON(file, display: display, into: &diagnostics) {
                let (layer, d) = FactorySettings.fileLayer(parsed.object, file: display, lines: parsed.lines)
                layers.append(layer)
                diagnostics += d
            }
        }
        let (settings, settingDiagnostics) = FactorySettings.resolve(layers: layers + settingsLayers)
        diagnostics += settingDiagnostics

        // Templates, parsed in parallel: a large factory has thousands.
        let templateFiles = snapshot.files.filter {
            $0.path.hasPrefix(prefix) && $0.path.lowercased().hasSuffix(".json")
        }.sorted { $0.path < $1.path }
        let parsed = ParallelMap.map(templateFiles) { file -> (ParsedTemplate?, [Diagnostic]) in
            let display = snapshot.displayPath(file.path)
            var local: [Diagnostic] = []
            // ARM refuses a template over 4 MB: say so before anything is deployed.
            if file.data.count > Naming.maxTemplateBytes {
                return (nil, [.error(String(format: "The template is %.1f MB; Azure Resource Manager refuses templates over 4 MB.", Double(file.data.count) / 1_048_576),
                                     file: display, hint: "Move large content (scripts, files) into artifacts or a storage account the VM downloads from.")])
            }
            guard let json = parseJSON(file, display: display, into: &local) else { return (nil, local) }
            let (template, d) = TemplateParser.parse(json.object, file: display, lines: json.lines)
            return (template, local + d)
        }
        var valid: [(ConfigFile, ParsedTemplate)] = []
        for (file, result) in zip(templateFiles, parsed) {
            diagnostics += result.1
            if let template = result.0 { valid.append((file, template)) }
        }
        let templates = assignNames(valid, prefix: prefix, settings: settings, snapshot: snapshot, diagnostics: &diagnostics)
        let allTemplatePaths = templateFiles.map { String($0.path.dropFirst(prefix.count)) }
        let index = ImagePathIndex(templatePaths: allTemplatePaths)

        // Labs.json.
        var labs: [TargetLab] = []
        var galleries: [GalleryTarget] = []
        var used = [Bool](repeating: false, count: index.templatePaths.count)  // by index.templatePaths
        if let file = snapshot.files.first(where: { $0.path.lowercased() == labsFile.lowercased() }) {
            if let json = parseJSON(file, display: labsPath, into: &diagnostics) {
                labs = parseLabs(json.object, lines: json.lines, file: labsPath, index: index, used: &used, diagnostics: &diagnostics)
                galleries = parseGalleries(json.object, lines: json.lines, file: labsPath, index: index, settings: settings,
                                           used: &used, diagnostics: &diagnostics)
                validateGalleryDefinitions(galleries, templates: templates, file: labsPath,
                                           templateDisplay: { snapshot.displayPath(prefix + $0) }, diagnostics: &diagnostics)
            }
        } else {
            diagnostics.append(.error("\(labsPath) was not found\(snapshot.commit.map { " at commit \($0.prefix(12))" } ?? "").",
                                      file: labsPath, hint: "Check --repo, --ref and --config-dir; the folder must hold Labs.json and GoldenImages/."))
        }

        // Names Azure would refuse: a warning here (the original's sample uses placeholders and must
        // validate), an error for any command that plans or runs (`azureNameErrors`).
        for lab in labs where !lab.azureNameProblems.isEmpty {
            diagnostics.append(.warning("\(lab.labName.isEmpty ? "A lab" : "Lab \(Naming.printable(lab.labName))"): \(lab.azureNameProblems.joined(separator: "; ")). Azure would refuse it: plan and run stop here.",
                                        file: labsPath, line: lab.line, hint: "Use the lab's real subscription id, resource group and name."))
        }

        // The factory lab keeps VHDs; copying them into itself would destroy them.
        for lab in labs where lab.subscriptionId.lowercased() == settings.subscriptionId.lowercased()
            && lab.labName.lowercased() == settings.factoryLab.lowercased() {
            diagnostics.append(.error("Lab \(lab.labName) is the factory lab (factoryLab in \(FactorySettings.fileName)); it cannot also receive images.",
                                      file: labsPath, line: lab.line, hint: "Remove it from Labs.json, or choose another factory lab."))
        }

        // Templates no lab (or gallery) uses.
        let usedPaths = Set(zip(index.templatePaths, used).lazy.filter { $0.1 }.map { $0.0 })
        for template in templates where !usedPaths.contains(template.path) {
            diagnostics.append(.warning("Template \(template.path) is not used by any lab\(galleries.isEmpty ? "" : " or gallery") in Labs.json.",
                                        file: snapshot.displayPath(prefix + template.path),
                                        hint: "Add its path (or a folder above it) to a lab's\(galleries.isEmpty ? "" : " or gallery's") ImagePaths, or delete it."))
        }
        if templateFiles.isEmpty {
            diagnostics.append(.error("No golden image templates were found under \(snapshot.displayPath(goldenImagesFolder))/.",
                                      file: snapshot.displayPath(goldenImagesFolder),
                                      hint: "Put one ARM template (*.json) per golden image in that folder or its sub-folders."))
        }
        var configuration = FactoryConfiguration(commit: snapshot.commit, configDirectory: snapshot.configDirectory, settings: settings,
                                                 labs: labs, galleries: galleries, templates: templates, diagnostics: diagnostics)
        configuration.digest = StableHash.sha256(snapshot.files.map { "\($0.path) \($0.blobSha)" }.sorted().joined(separator: "\n"))
        return configuration
    }

    struct ParsedJSON {
        var object: Any
        var lines: LineIndex
    }

    static func parseJSON(_ file: ConfigFile, display: String, into diagnostics: inout [Diagnostic]) -> ParsedJSON? {
        guard let text = JSONText.decodeText(file.data) else {
            diagnostics.append(.error("The file is not valid UTF-8 or UTF-16 text.", file: display,
                                      hint: "Save it as UTF-8 (with or without BOM) or UTF-16 with BOM."))
            return nil
        }
        do {
            let object = try JSONText.parse(text)
            return ParsedJSON(object: object, lines: LineIndex(text))
        } catch {
            diagnostics.append(.error("Invalid JSON: \(error.message).", file: display, line: error.line, column: error.column,
                                      hint: "Fix the JSON syntax at this position (a missing comma, quote or bracket is the usual cause)."))
            return nil
        }
    }

    private static func assignNames(_ valid: [(ConfigFile, ParsedTemplate)], prefix: String, settings: FactorySettings,
                                    snapshot: ConfigSnapshot, diagnostics: inout [Diagnostic]) -> [GoldenImageTemplate] {
        // Explicit names (metadata.imageFactory.vmName) are reserved first; collisions among them are errors.
        var explicitOwners: [String: String] = [:]
        for (file, t) in valid {
            guard let name = t.explicitVMName else { continue }
            let display = snapshot.displayPath(file.path)
            if let problem = Naming.vmNameProblem(name, osType: t.osType) {
                diagnostics.append(.error("metadata.imageFactory.vmName \"\(name)\" \(problem).", file: display,
                                          hint: "Choose 1 to 15 letters, digits or hyphens."))
                continue
            }
            if let other = explicitOwners[name.lowercased()] {
                diagnostics.append(.error("VM name \"\(name)\" is also used by \(other): the factory VMs would collide.", file: display,
                                          hint: "Give one of them a different metadata.imageFactory.vmName."))
            } else {
                explicitOwners[name.lowercased()] = snapshot.displayPath(file.path)
            }
        }
        let derivedPaths = valid.filter { $0.1.explicitVMName == nil }.map { String($0.0.path.dropFirst(prefix.count)) }
        let derived = Naming.assignVMNames(templatePaths: derivedPaths, reserved: Set(explicitOwners.keys))
        var imageOwners: [String: String] = [:]
        var result: [GoldenImageTemplate] = []
        for (file, t) in valid {
            let path = String(file.path.dropFirst(prefix.count))
            let imageName = Naming.imageBaseName(forTemplate: path)
            if let other = imageOwners[imageName.lowercased()] {
                diagnostics.append(.error("Image name \"\(imageName)\" would be made by both \(other) and \(path).",
                                          file: snapshot.displayPath(file.path),
                                          hint: "Rename one of the files or folders: names are made from the path with '.' to '_' and ' ' to '-'."))
            }
            imageOwners[imageName.lowercased()] = path
            result.append(GoldenImageTemplate(
                path: path, blobSha: file.blobSha, osType: t.osType, osState: t.osState ?? settings.defaultOsState,
                vmName: t.explicitVMName ?? derived[path] ?? Naming.baseVMName(forTemplate: path), imageName: imageName,
                description: t.description, galleryImageReference: t.galleryImageReference, artifacts: t.artifacts,
                vmSize: t.vmSize, templateJSON: file.data, galleryImage: t.galleryImage, requestedDataDisks: t.requestedDataDisks))
        }
        return result
    }

    /// Parses the lab entries; `used` marks (by `index.templatePaths`) the templates the accepted labs receive.
    private static func parseLabs(_ object: Any, lines: LineIndex, file: String, index: ImagePathIndex,
                                  used: inout [Bool], diagnostics: inout [Diagnostic]) -> [TargetLab] {
        guard let root = object as? [String: Any], let list = JSONText.value(root, "Labs") else {
            diagnostics.append(.error("Labs.json has no \"Labs\" array at the top level.", file: file, line: 1,
                                      hint: "Expected { \"Labs\": [ { \"SubscriptionId\": ..., \"LabName\": ..., \"ImagePaths\": [...] } ] }."))
            return []
        }
        guard let entries = list as? [Any] else {
            diagnostics.append(.error("\"Labs\" must be an array.", file: file, line: lines.locate("\"Labs\"")?.line ??
                                        lines.locate("abs\"")?.line))
            return []
        }
        var labs: [TargetLab] = []
        var seen: [String: Int] = [:]  // key -> line
        // Values are looked for after the "Labs" key, so a Galleries array written first never matches.
        var cursor = root.keys.first { $0.lowercased() == "labs" }.flatMap { lines.locate("\"\($0)\"")?.end } ?? 0
        // The entry that last picked each template (by index.templatePaths): merges a lab's
        // ImagePaths without hashing path strings, which matters with thousands of labs.
        var pickedBy = [Int](repeating: -1, count: index.templatePaths.count)
        for (i, raw) in entries.enumerated() {
            let label = "Labs[\(i)]"
            guard let entry = raw as? [String: Any] else {
                diagnostics.append(.error("\(label) is not an object.", file: file))
                continue
            }
            func string(_ key: String) -> (String?, Bool) {  // (value, present but wrong type)
                guard let v = JSONText.value(entry, key) else { return (nil, false) }
                guard let s = v as? String else { return (nil, true) }
                // Nothing to trim when both ends are visible ASCII (the usual case): skip CharacterSet work.
                if let first = s.utf8.first, let last = s.utf8.last, (0x21...0x7E).contains(first), (0x21...0x7E).contains(last) {
                    return (s, false)
                }
                return (s.trimmingCharacters(in: .whitespaces), false)
            }
            let (labName, labNameWrong) = string("LabName")
            let (subscription, subWrong) = string("SubscriptionId")
            let (group, groupWrong) = string("ResourceGroup")
            let (location, locationWrong) = string("Location")
            var line: Int?
            // The entry's line: found by its lab name, else by another of its values (an entry without a LabName still has one).
            for value in [labName, subscription, group, location] {
                guard let value, !value.isEmpty, let hit = lines.locate("\"\(jsonEscaped(value))\"", from: cursor) else { continue }
                line = hit.line
                cursor = hit.end
                break
            }
            let name = labName.flatMap { $0.isEmpty ? nil : "\(label) (\($0))" } ?? label
            var ok = true
            for (key, value, wrong) in [("LabName", labName, labNameWrong), ("SubscriptionId", subscription, subWrong)] {
                if wrong {
                    diagnostics.append(.error("\(name): \(key) must be a string.", file: file, line: line))
                    ok = false
                } else if value == nil || value!.isEmpty {
                    diagnostics.append(.error("\(name): \(key) is missing.", file: file, line: line,
                                              hint: "Every lab entry needs SubscriptionId, LabName and ImagePaths."))
                    ok = false
                }
            }
            for (key, wrong) in [("ResourceGroup", groupWrong), ("Location", locationWrong)] where wrong {
                diagnostics.append(.error("\(name): \(key) must be a string.", file: file, line: line))
            }
            var imagePaths: [String] = []
            var picked: [Int] = []  // indexes into index.templatePaths
            switch JSONText.value(entry, "ImagePaths") {
            case nil:
                diagnostics.append(.error("\(name): ImagePaths is missing.", file: file, line: line,
                                          hint: "List the templates or folders (relative to GoldenImages/) this lab receives."))
                ok = false
            case let paths as [Any]:
                if paths.isEmpty {
                    diagnostics.append(.warning("\(name): ImagePaths is empty; the lab receives no images.", file: file, line: line))
                }
                for (j, p) in paths.enumerated() {
                    guard let rawPath = p as? String else {
                        diagnostics.append(.error("\(name): ImagePaths[\(j)] must be a string.", file: file, line: line))
                        continue
                    }
                    let normalized = ImagePath.normalize(rawPath)
                    let pathLine = lines.locate("\"\(jsonEscaped(rawPath))\"", from: line.map { _ in cursor } ?? 0)?.line ?? line
                    guard let resolution = index.resolveIndexes(normalized), !normalized.isEmpty else {
                        var hint = "ImagePaths are relative to GoldenImages/ and name a template file or a folder."
                        if let close = index.closest(to: normalized) { hint = "Did you mean \"\(close)\"?" }
                        diagnostics.append(.error("\(name): ImagePath \"\(rawPath)\" matches no template.", file: file,
                                                  line: pathLine, hint: hint))
                        continue
                    }
                    if let real = resolution.caseCorrectedPath {
                        diagnostics.append(.warning("\(name): ImagePath \"\(rawPath)\" matches \"\(real)\" only ignoring case.",
                                                    file: file, line: pathLine, hint: "Write it as \"\(real)\"."))
                        imagePaths.append(real)
                    } else {
                        imagePaths.append(normalized)
                    }
                    for n in resolution.indexes where pickedBy[n] != i {
                        pickedBy[n] = i
                        picked.append(n)
                    }
                }
            default:
                diagnostics.append(.error("\(name): ImagePaths must be an array of strings.", file: file, line: line))
                ok = false
            }
            guard ok, let labName, let subscription else { continue }
            picked.sort()  // templatePaths is sorted, so this sorts the images by path
            let lab = TargetLab(subscriptionId: subscription, resourceGroup: (group?.isEmpty ?? true) ? nil : group,
                                labName: labName, location: location.flatMap { $0.isEmpty ? nil : Location.normalize($0) },
                                imagePaths: imagePaths, images: picked.map { index.templatePaths[$0] }, line: line)
            if let first = seen[lab.key] {
                diagnostics.append(.error("\(name): lab \"\(labName)\" in subscription \(subscription) is listed twice (first at line \(first)).",
                                          file: file, line: line, hint: "Merge the two entries' ImagePaths into one entry."))
                continue
            }
            seen[lab.key] = line ?? 0
            labs.append(lab)
            for n in picked { used[n] = true }
        }
        return labs
    }

    static func jsonEscaped(_ s: String) -> String {
        guard s.utf8.contains(where: { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\"") }) else { return s }
        return s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}

/// The `validate --json` document: what later stages will act on, and every diagnostic.
public struct ConfigurationReport: Codable, Sendable {
    public struct Lab: Codable, Sendable {
        public var subscriptionId: String
        public var resourceGroup: String?
        public var labName: String
        public var images: [String]
    }
    public struct Template: Codable, Sendable {
        public var path: String
        public var blobSha: String
        public var osType: OSType
        public var osState: OSState
        public var vmName: String
        public var imageName: String
    }
    /// A `Galleries` entry with the definition each of its templates maps to.
    public struct Gallery: Codable, Sendable {
        public var subscriptionId: String
        public var resourceGroup: String
        public var galleryName: String
        public var location: String
        public var images: [String]
        /// Template path -> image definition name.
        public var definitions: [String: String]
    }
    public var commit: String?
    public var labs: [Lab]
    /// Absent (not empty) without a `Galleries` array, so older consumers see the same document.
    public var galleries: [Gallery]?
    public var templates: [Template]
    public var diagnostics: [Diagnostic]

    public init(_ configuration: FactoryConfiguration) {
        commit = configuration.commit
        labs = configuration.labs.map { Lab(subscriptionId: $0.subscriptionId, resourceGroup: $0.resourceGroup, labName: $0.labName, images: $0.images) }
        galleries = configuration.galleries.isEmpty ? nil : configuration.galleries.map { gallery in
            var definitions: [String: String] = [:]
            for path in gallery.images {
                if let template = configuration.template(at: path) { definitions[path] = gallery.definition(for: template).name }
            }
            return Gallery(subscriptionId: gallery.subscriptionId, resourceGroup: gallery.resourceGroup, galleryName: gallery.galleryName,
                           location: gallery.location, images: gallery.images, definitions: definitions)
        }
        templates = configuration.templates.map {
            Template(path: $0.path, blobSha: $0.blobSha, osType: $0.osType, osState: $0.osState, vmName: $0.vmName, imageName: $0.imageName)
        }
        diagnostics = configuration.diagnostics
    }
}

/// Maps work over a collection on every core, keeping order. Used for CPU-bound parsing.
public enum ParallelMap {
    public static func map<T: Sendable, R: Sendable>(_ items: [T], _ transform: @Sendable (T) -> R) -> [R] {
        if items.count < 64 { return items.map(transform) }
        let box = ResultBox<R>(count: items.count)
        let chunks = max(1, min(items.count / 32, ProcessInfo.processInfo.activeProcessorCount * 4))
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            var local: [(Int, R)] = []
            var i = chunk
            while i < items.count {
                local.append((i, transform(items[i])))
                i += chunks
            }
            box.store(local)
        }
        return box.values()
    }

    /// The one lock-protected box for results written from several threads.
    private final class ResultBox<R>: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [R?]
        init(count: Int) { slots = Array(repeating: nil, count: count) }
        func store(_ items: [(Int, R)]) {
            lock.lock()
            for (i, r) in items { slots[i] = r }
            lock.unlock()
        }
        func values() -> [R] { slots.map { $0! } }
    }
}
