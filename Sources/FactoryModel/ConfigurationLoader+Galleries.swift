import Foundation

/// The optional top-level `Galleries` array of Labs.json: Azure Compute Galleries the factory
/// publishes to. A Labs.json without it loads exactly as before.
extension ConfigurationLoader {
    /// The keys a `Galleries` entry may have (any case), as documented in the README.
    static let galleryKeys = ["SubscriptionId", "ResourceGroup", "GalleryName", "Location", "ImagePaths", "TargetRegions", "ReplicaCount",
                              "ImagesToSave", "ExcludeFromLatest", "EndOfLifeDays", "Publisher", "LabServices", "RetireMode"]
    /// The storage account types a gallery replica may use.
    public static let galleryStorageAccountTypes = ["Standard_LRS", "Standard_ZRS", "Premium_LRS"]
    /// Replicas Azure allows per region.
    public static let galleryReplicaRange = 1...100

    /// Parses and validates the `Galleries` entries, collecting every problem with its Labs.json line;
    /// `used` marks (by `index.templatePaths`) the templates the accepted galleries receive.
    static func parseGalleries(_ object: Any, lines: LineIndex, file: String, index: ImagePathIndex, settings: FactorySettings,
                               used: inout [Bool], diagnostics: inout [Diagnostic]) -> [GalleryTarget] {
        guard let root = object as? [String: Any], let rootKey = root.keys.first(where: { $0.lowercased() == "galleries" }) else { return [] }
        let keyHit = lines.locate("\"\(jsonEscaped(rootKey))\"")
        guard let entries = root[rootKey] as? [Any] else {
            diagnostics.append(.error("\"Galleries\" must be an array.", file: file, line: keyHit?.line,
                                      hint: "Expected \"Galleries\": [ { \"SubscriptionId\": ..., \"ResourceGroup\": ..., \"GalleryName\": ..., \"ImagePaths\": [...] } ]."))
            return []
        }
        var galleries: [GalleryTarget] = []
        var seen: [String: Int] = [:]  // key -> line
        var cursor = keyHit?.end ?? 0  // values are looked for after the "Galleries" key, so Labs entries never match
        let knownKeys = Dictionary(uniqueKeysWithValues: galleryKeys.map { ($0.lowercased(), $0) })
        for (i, raw) in entries.enumerated() {
            let label = "Galleries[\(i)]"
            guard let entry = raw as? [String: Any] else {
                diagnostics.append(.error("\(label) is not an object.", file: file, line: keyHit?.line))
                continue
            }
            var wrongType: [String] = []
            func string(_ key: String) -> String? {
                guard let v = JSONText.value(entry, key) else { return nil }
                guard let s = v as? String else { wrongType.append(key); return nil }
                let trimmed = s.trimmingCharacters(in: .whitespaces)
                return trimmed.isEmpty ? nil : trimmed
            }
            let galleryName = string("GalleryName")
            let subscription = string("SubscriptionId")
            let group = string("ResourceGroup")
            let location = string("Location")
            let publisher = string("Publisher")
            let retireText = string("RetireMode")
            // The entry's line: found by its gallery name, else by another of its values.
            var line: Int?
            let entryStart = cursor
            for value in [galleryName, subscription, group, location] {
                guard let value, let hit = lines.locate("\"\(jsonEscaped(value))\"", from: cursor) else { continue }
                line = hit.line
                cursor = hit.end
                break
            }
            let entryCursor = cursor
            /// The line of a value of this entry: looked for after the entry's gallery name (where the
            /// usual key order puts it), then from the end of the previous entry, else the entry's line.
            func lineOf(_ value: String) -> Int? {
                let needle = "\"\(jsonEscaped(value))\""
                return (lines.locate(needle, from: entryCursor) ?? lines.locate(needle, from: entryStart))?.line ?? line
            }
            let name = galleryName.map { "\(label) (\(Naming.printable($0)))" } ?? label
            func error(_ message: String, line at: Int? = nil, hint: String? = nil) {
                diagnostics.append(.error("\(name): \(message)", file: file, line: at ?? line, hint: hint))
            }
            func warning(_ message: String, line at: Int? = nil, hint: String? = nil) {
                diagnostics.append(.warning("\(name): \(message)", file: file, line: at ?? line, hint: hint))
            }

            for key in entry.keys.sorted() where knownKeys[key.lowercased()] == nil && !key.hasPrefix("$") && key.lowercased() != "comment" {
                warning("unknown key \"\(key)\" is ignored.", line: lineOf(key),
                        hint: "Gallery keys: \(galleryKeys.joined(separator: ", ")).")
            }
            for key in wrongType { error("\(key) must be a string.") }
            var ok = true
            for (key, value) in [("SubscriptionId", subscription), ("ResourceGroup", group), ("GalleryName", galleryName)]
            where value == nil && !wrongType.contains(key) {
                error("\(key) is missing.", hint: "Every gallery entry needs SubscriptionId, ResourceGroup, GalleryName and ImagePaths.")
                ok = false
            }
            if let subscription, let p = Naming.subscriptionIdProblem(subscription) {
                error("SubscriptionId \"\(Naming.printable(subscription))\" \(p).", hint: "Use the subscription id of the gallery's subscription.")
            }
            if let group, let p = Naming.resourceGroupProblem(group) {
                error("ResourceGroup \"\(Naming.printable(group))\" \(p).", hint: "Use the name of the gallery's resource group.")
            }
            if let galleryName, let p = Naming.galleryNameProblem(galleryName) {
                var hint = "Use 1 to 80 letters, digits, periods and underscores, starting with a letter or digit and not ending with a period."
                if galleryName.contains("-") { hint = "Try \"\(galleryName.replacingOccurrences(of: "-", with: "_"))\": Azure refuses hyphens in gallery names." }
                error("GalleryName \"\(Naming.printable(galleryName))\" \(p).", hint: hint)
            }
            if let publisher, let p = Naming.galleryIdentifierProblem(publisher) {
                error("Publisher \"\(Naming.printable(publisher))\" \(p).", hint: "Use 1 to 128 letters, digits, '.', '-' or '_'.")
            }

            // Regions.
            func region(_ raw: String, what: String, at: Int?) -> String? {
                let normalized = Location.normalize(raw)
                if AzureRegions.names.contains(normalized) { return normalized }
                let hint = AzureRegions.suggestion(for: raw).map { "Did you mean \"\($0)\"?" }
                    ?? "Use an Azure region name such as westeurope (az account list-locations -o table lists them); if Azure added this region recently, report it so it is added to imagefactory's list."
                error("\(what) \"\(Naming.printable(raw))\" is not an Azure region.", line: at, hint: hint)
                return nil
            }
            let galleryLocation = location.flatMap { region($0, what: "Location", at: lineOf($0)) } ?? settings.location
            var targetRegions: [GalleryRegion] = []
            var regionLines: [String: Int] = [:]
            switch JSONText.value(entry, "TargetRegions") {
            case nil: break
            case let list as [Any]:
                for (j, item) in list.enumerated() {
                    var regionName: String?
                    var replicas: Int?
                    var storage: String?
                    if let text = item as? String {
                        regionName = text
                    } else if let object = item as? [String: Any] {
                        if let text = JSONText.value(object, "Name") as? String { regionName = text }
                        if let raw = JSONText.value(object, "ReplicaCount") {
                            if let n = JSONScalar.int(raw) { replicas = n } else {
                                error("TargetRegions[\(j)].ReplicaCount must be a whole number.", line: regionName.flatMap(lineOf))
                            }
                        }
                        if let raw = JSONText.value(object, "StorageAccountType") {
                            if let text = raw as? String { storage = text } else {
                                error("TargetRegions[\(j)].StorageAccountType must be a string.", line: regionName.flatMap(lineOf))
                            }
                        }
                        for key in object.keys.sorted() where !["name", "replicacount", "storageaccounttype"].contains(key.lowercased()) {
                            warning("TargetRegions[\(j)]: unknown key \"\(key)\" is ignored.", line: lineOf(key),
                                    hint: "A target region has Name, ReplicaCount and StorageAccountType.")
                        }
                    }
                    guard let regionName, !regionName.trimmingCharacters(in: .whitespaces).isEmpty else {
                        error("TargetRegions[\(j)] must be a region name or an object with a \"Name\".",
                              hint: "For example \"TargetRegions\": [ \"westeurope\", { \"Name\": \"northeurope\", \"ReplicaCount\": 2 } ].")
                        continue
                    }
                    let regionLine = lineOf(regionName)
                    if let replicas, !galleryReplicaRange.contains(replicas) {
                        error("TargetRegions[\(j)] (\(Naming.printable(regionName))): ReplicaCount \(replicas) is out of range; Azure allows 1 to 100 replicas per region.",
                              line: regionLine)
                    }
                    var storageType: String?
                    if let storage {
                        if let canonical = galleryStorageAccountTypes.first(where: { $0.lowercased() == storage.trimmingCharacters(in: .whitespaces).lowercased() }) {
                            storageType = canonical
                        } else {
                            error("TargetRegions[\(j)] (\(Naming.printable(regionName))): StorageAccountType \"\(Naming.printable(storage))\" is not one of \(galleryStorageAccountTypes.joined(separator: ", ")).",
                                  line: regionLine, hint: "Standard_ZRS survives a zone failure (in regions with availability zones); Standard_LRS is cheapest.")
                        }
                    }
                    guard let normalized = region(regionName, what: "TargetRegions[\(j)]", at: regionLine) else { continue }
                    if let first = regionLines[normalized] {
                        error("TargetRegions lists \(normalized) twice (first at line \(first)).", line: regionLine,
                              hint: "Keep one entry per region; Azure refuses a region listed twice.")
                        continue
                    }
                    if let home = AzureRegions.cloud(of: galleryLocation), let there = AzureRegions.cloud(of: normalized), home != there {
                        error("TargetRegions[\(j)] \(normalized) is in \(there.rawValue), but the gallery (\(galleryLocation)) is in \(home.rawValue); versions cannot replicate between clouds.",
                              line: regionLine, hint: "Use a separate gallery (and factory) in that cloud.")
                        continue
                    }
                    regionLines[normalized] = regionLine ?? 0
                    targetRegions.append(GalleryRegion(name: normalized, replicaCount: replicas, storageAccountType: storageType))
                }
            default:
                error("TargetRegions must be an array of region names or { \"Name\", \"ReplicaCount\", \"StorageAccountType\" } objects.")
            }

            // Numbers and switches.
            func whole(_ key: String, range: ClosedRange<Int>, rule: String) -> Int? {
                guard let raw = JSONText.value(entry, key) else { return nil }
                guard let value = JSONScalar.int(raw) else {
                    error("\(key) must be a whole number.")
                    return nil
                }
                guard range.contains(value) else {
                    error("\(key) \(value) is out of range: \(rule).")
                    return nil
                }
                return value
            }
            func flag(_ key: String) -> Bool? {
                guard let raw = JSONText.value(entry, key) else { return nil }
                guard let value = JSONScalar.bool(raw) else {
                    error("\(key) must be true or false.")
                    return nil
                }
                return value
            }
            let replicaCount = whole("ReplicaCount", range: galleryReplicaRange, rule: "Azure allows 1 to 100 replicas per region") ?? 1
            let imagesToSave = whole("ImagesToSave", range: 1...Int(Int32.max), rule: "a gallery keeps at least 1 version per image") ?? settings.imagesToSave
            let endOfLifeDays = whole("EndOfLifeDays", range: 1...36_500, rule: "versions reach end of life 1 to 36500 days after publishing")
            let excludeFromLatest = flag("ExcludeFromLatest") ?? false
            let labServices = flag("LabServices") ?? false
            var retireMode = GalleryRetireMode.delete
            if let retireText {
                if let mode = GalleryRetireMode.allCases.first(where: { $0.rawValue.lowercased() == retireText.lowercased() }) {
                    retireMode = mode
                } else {
                    error("RetireMode \"\(Naming.printable(retireText))\" is not one of \(GalleryRetireMode.allCases.map(\.rawValue).joined(separator: ", ")).",
                          line: lineOf(retireText), hint: "Delete removes old versions at once; ExcludeFromLatest first hides them from \"latest\" and deletes them a run later.")
                }
            }

            // ImagePaths, resolved exactly as a lab's.
            var imagePaths: [String] = []
            var picked = Set<Int>()
            switch JSONText.value(entry, "ImagePaths") {
            case nil:
                error("ImagePaths is missing.", hint: "List the templates or folders (relative to GoldenImages/) this gallery publishes.")
                ok = false
            case let paths as [Any]:
                for (j, p) in paths.enumerated() {
                    guard let rawPath = p as? String else {
                        error("ImagePaths[\(j)] must be a string.")
                        continue
                    }
                    let normalized = ImagePath.normalize(rawPath)
                    let pathLine = lineOf(rawPath)
                    guard let resolution = index.resolveIndexes(normalized), !normalized.isEmpty else {
                        var hint = "ImagePaths are relative to GoldenImages/ and name a template file or a folder."
                        if let close = index.closest(to: normalized) { hint = "Did you mean \"\(close)\"?" }
                        error("ImagePath \"\(rawPath)\" matches no template.", line: pathLine, hint: hint)
                        continue
                    }
                    if let real = resolution.caseCorrectedPath {
                        warning("ImagePath \"\(rawPath)\" matches \"\(real)\" only ignoring case.", line: pathLine, hint: "Write it as \"\(real)\".")
                        imagePaths.append(real)
                    } else {
                        imagePaths.append(normalized)
                    }
                    picked.formUnion(resolution.indexes)
                }
            default:
                error("ImagePaths must be an array of strings.")
                ok = false
            }

            guard ok, let galleryName, let subscription, let group else { continue }
            let gallery = GalleryTarget(
                subscriptionId: subscription, resourceGroup: group, galleryName: galleryName, location: galleryLocation,
                imagePaths: imagePaths, images: picked.sorted().map { index.templatePaths[$0] }, targetRegions: targetRegions,
                replicaCount: replicaCount, imagesToSave: imagesToSave, excludeFromLatest: excludeFromLatest, endOfLifeDays: endOfLifeDays,
                publisher: publisher, labServices: labServices, retireMode: retireMode, line: line)
            if let first = seen[gallery.key] {
                error("gallery \"\(galleryName)\" in resource group \(group) of subscription \(subscription) is listed twice (first at line \(first)).",
                      hint: "Merge the two entries' ImagePaths into one entry.")
                continue
            }
            seen[gallery.key] = line ?? 0
            if gallery.images.isEmpty {
                warning("its ImagePaths match no template; the gallery receives no images.",
                        hint: "List the templates or folders (relative to GoldenImages/) this gallery publishes.")
            }
            galleries.append(gallery)
            for n in picked { used[n] = true }
        }
        return galleries
    }

    /// Checks the image definitions each gallery would hold: names and identifiers Azure would
    /// refuse, two templates landing on one definition name or one publisher/offer/SKU, and for a
    /// Lab Services gallery the templates whose VM asks for data disks.
    static func validateGalleryDefinitions(_ galleries: [GalleryTarget], templates: [GoldenImageTemplate], file: String,
                                           templateDisplay: (String) -> String, diagnostics: inout [Diagnostic]) {
        let byPath = Dictionary(templates.map { ($0.path, $0) }, uniquingKeysWith: { first, _ in first })
        for gallery in galleries {
            let name = "Gallery \(Naming.printable(gallery.galleryName))"
            var names: [String: String] = [:]  // lowercased definition name -> template path
            var identifiers: [String: (path: String, plan: GalleryImageDefinitionPlan)] = [:]
            for path in gallery.images {
                guard let template = byPath[path] else { continue }  // a template that failed to parse is reported already
                let plan = gallery.definition(for: template)
                let metadata = template.galleryImage
                // Values from metadata were checked once, at the template; derived ones are checked here.
                var problems: [String] = []
                if metadata?.definitionName == nil, let p = Naming.galleryImageNameProblem(plan.name) {
                    problems.append("definition name \"\(plan.name)\" \(p)")
                }
                for (key, value, fromMetadata) in [("offer", plan.offer, metadata?.offer != nil), ("sku", plan.sku, metadata?.sku != nil)]
                where !fromMetadata {
                    if let p = Naming.galleryIdentifierProblem(value) { problems.append("\(key) \"\(value)\" \(p)") }
                }
                for problem in problems {
                    diagnostics.append(.error("\(name): the image definition for \(path): \(problem).", file: file, line: gallery.line,
                                              hint: "Set it in \(templateDisplay(path)) under metadata.imageFactory."))
                }
                if let other = names[plan.name.lowercased()] {
                    diagnostics.append(.error("\(name): \(other) and \(path) both map to image definition \"\(plan.name)\"; their versions would mix.",
                                              file: file, line: gallery.line,
                                              hint: "Give one of them its own metadata.imageFactory.definitionName (or rename a file or folder)."))
                } else {
                    names[plan.name.lowercased()] = path
                    if let other = identifiers[plan.identifierKey] {
                        diagnostics.append(.error("\(name): \(other.path) and \(path) both have publisher/offer/sku \(plan.publisher)/\(plan.offer)/\(plan.sku); Azure requires it unique in a gallery.",
                                                  file: file, line: gallery.line,
                                                  hint: "Set a different metadata.imageFactory.offer or sku in one of them."))
                    } else {
                        identifiers[plan.identifierKey] = (path, plan)
                    }
                }
                if gallery.labServices, let disks = template.requestedDataDisks {
                    diagnostics.append(.warning("\(name) is for Azure Lab Services, but \(path) asks for \(disks == 1 ? "a data disk" : "\(disks) data disks") (properties.dataDiskParameters).",
                                                file: file, line: gallery.line,
                                                hint: "Lab Services shows only single-disk images; the factory publishes the OS disk alone, so put the data on the OS disk or drop the data disks."))
                }
            }
        }
    }
}
