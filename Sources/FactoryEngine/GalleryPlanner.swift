import FactoryModel
import Foundation

/// The image a template path has at the end of the run, as a gallery publishes it.
struct GalleryImageSource {
    /// The record, when it exists at planning (nil for a capture of this run).
    var record: VhdRecord?
    /// The capture of this run that makes the record.
    var captureAction: String?
    /// The VHD and its record in the factory's storage.
    var vhd: BlobID
    var recordBlob: BlobID
    var tags: [String: String]
}

/// Plans every configured gallery: the gallery and definitions it lacks, the version of each
/// subscribed template's current image (published until every region is complete), and the
/// retirement of versions (and emptied definitions) it no longer keeps. Pure, like the planner.
enum GalleryPlanner {
    static let description = "Golden images published by ImageFactory"
    /// Azure's documented limits: image definitions per gallery, versions per definition.
    static let maxDefinitionsPerGallery = 1000
    static let maxVersionsPerDefinition = 10_000

    struct Result {
        var actions: [PlanAction] = []
        var diagnostics: [Diagnostic] = []
    }

    static func plan(_ configuration: FactoryConfiguration, inventory: Inventory, sources: [String: GalleryImageSource]) -> Result {
        var result = Result()
        // Which factory made a gallery resource: factories sharing a gallery never touch each other's.
        let factoryTag = inventory.factory.id.resourceId.lowercased()
        let owned = [FactoryTag.managedBy: "ImageFactory", FactoryTag.factory: factoryTag]
        let labsFile = configuration.configDirectory.isEmpty ? ConfigurationLoader.labsFile : configuration.configDirectory + "/" + ConfigurationLoader.labsFile
        var nameCount: [String: Int] = [:]
        for g in configuration.galleries { nameCount[g.galleryName.lowercased(), default: 0] += 1 }
        for target in configuration.galleries {
            let label = (nameCount[target.galleryName.lowercased()] ?? 0) > 1 ? "\(target.galleryName)@\(target.subscriptionId)" : target.galleryName
            let observed = inventory.gallery(target.key)
            if let problem = observed?.problem {
                result.diagnostics.append(.error(problem, file: labsFile, line: target.line, hint: "Grant the identity Contributor on \(target.resourceGroup), or fix the entry."))
                continue
            }
            var ensureGallery: String?
            if observed?.gallery == nil {
                let id = "distribute/gallery/\(label)"
                ensureGallery = id
                result.actions.append(PlanAction(id: id, stage: .distribute,
                                                 operation: .ensureGallery(GallerySpec(gallery: target.id, location: target.location, description: description,
                                                                                       tags: owned)),
                                                 reason: "gallery \(target.galleryName) does not exist yet"))
            }
            var currentDefinitions = Set<String>()
            var publishByDefinition: [String: String] = [:]
            var currentVersion: [String: String] = [:]  // definition name (lowercased) -> version kept as current
            var planned = Set<String>()

            for path in target.images.sorted() {
                guard let template = configuration.template(at: path), let source = sources[path] else { continue }
                let wanted = target.definition(for: template)
                let key = wanted.name.lowercased()
                guard !planned.contains(key) else { continue }  // two templates, one definition: reported by validation
                planned.insert(key)
                currentDefinitions.insert(key)
                let definitionID = GalleryImageDefinitionID(gallery: target.id, name: wanted.name)
                let existing = observed?.definition(named: wanted.name)
                if let existing, existing.definition.osType != wanted.osType || existing.definition.osState != wanted.osState {
                    result.diagnostics.append(.error(
                        "Gallery \(target.galleryName): image definition \(wanted.name) is \(existing.definition.osType.rawValue) \(existing.definition.osState.rawValue), but \(path) captures \(wanted.osType.rawValue) \(wanted.osState.rawValue).",
                        file: labsFile, line: target.line,
                        hint: "Azure cannot change a definition's OS type or state: give the template another definitionName (metadata.imageFactory), or use a matching capture mode."))
                    continue
                }
                var dependsOn: [String] = ensureGallery.map { [$0] } ?? []
                if existing == nil && (observed?.definitions.count ?? 0) + planned.count > maxDefinitionsPerGallery {
                    result.diagnostics.append(.error("Gallery \(target.galleryName) would hold more than Azure's \(maxDefinitionsPerGallery) image definitions; \(path) is not published.",
                                                     file: labsFile, line: target.line, hint: "Spread the images over more galleries, or remove unused definitions."))
                    continue
                }
                if let existing, existing.versions.count + 1 > maxVersionsPerDefinition {
                    result.diagnostics.append(.error("Image definition \(wanted.name) in \(target.galleryName) holds Azure's maximum of \(maxVersionsPerDefinition) versions; \(path) is not published.",
                                                     file: labsFile, line: target.line, hint: "Lower ImagesToSave, or delete old versions."))
                    continue
                }
                if existing == nil {
                    let id = "distribute/gallery/\(label)/definition/\(wanted.name)"
                    let definition = GalleryImageDefinition(
                        id: definitionID, location: target.location, osType: wanted.osType, osState: wanted.osState, publisher: wanted.publisher,
                        offer: wanted.offer, sku: wanted.sku, provisioningState: "", tags: owned.merging([FactoryTag.imagePath: path]) { a, _ in a },
                        hyperVGeneration: wanted.hyperVGeneration, recommendedVCPUs: wanted.recommendedVCPUs,
                        recommendedMemoryGB: wanted.recommendedMemoryGB, endOfLife: wanted.endOfLife, description: template.description)
                    result.actions.append(PlanAction(id: id, stage: .distribute, operation: .ensureImageDefinition(GalleryDefinitionSpec(definition: definition, imagePath: path)),
                                                     reason: "gallery \(target.galleryName) has no image definition for \(path)", dependsOn: dependsOn))
                    dependsOn.append(id)
                }
                if let capture = source.captureAction { dependsOn.append(capture) }
                if target.labServices, let record = source.record {
                    let problems = target.labServicesProblems(record: record)
                    if !problems.isEmpty {
                        result.diagnostics.append(contentsOf: problems.map {
                            .error("Gallery \(target.galleryName) is for Azure Lab Services, and \(path) breaks its rules: \($0).", file: labsFile, line: target.line,
                                   hint: "Lab Services takes one OS disk of at most 128 GB: shrink the image, or remove the path from this gallery.")
                        })
                        continue
                    }
                }
                let (regions, addedSource) = target.publishingRegions
                let version = source.record.map(GalleryVersioning.version(for:))
                if let version { currentVersion[key] = version }
                var reason: String?
                if version == nil {
                    reason = "publish the image captured in this run"
                } else if let version {
                    let found = existing?.versions.first { $0.id.version == version }
                    if let found {
                        if found.tags[FactoryTag.imagePath] == nil || found.tags[FactoryTag.factory] != factoryTag {
                            result.diagnostics.append(.error("Gallery \(target.galleryName): version \(version) of \(wanted.name) exists and was not made by this factory; \(path) cannot be published under that number.",
                                                             file: labsFile, line: target.line, hint: "Delete or renumber that version."))
                            continue
                        }
                        let wantedRegions = Set(regions.map(\.name))
                        let haveRegions = Set(found.targetRegions.map { Location.normalize($0.name) })
                        if !found.failedRegions.isEmpty {
                            reason = "version \(version) failed to replicate to \(found.failedRegions.joined(separator: ", ")): retry \(found.failedRegions.count == 1 ? "that region" : "those regions") alone"
                        } else if found.provisioningState.lowercased() == "failed" {
                            reason = "version \(version) failed as a whole: delete it and make it again"
                        } else if !found.isFullyReplicated && !(found.replication.isEmpty && found.provisioningState == "Succeeded") {
                            reason = "version \(version) is still replicating (\(found.aggregatedReplicationState)): wait until every region is complete"
                        } else if wantedRegions != haveRegions {
                            reason = "the gallery's target regions changed: update version \(version) to \(regions.map(\.name).joined(separator: ", "))"
                        }
                    } else {
                        reason = "gallery \(target.galleryName) lacks version \(version) of \(wanted.name)"
                    }
                }
                guard var reason else { continue }
                if addedSource { reason += "; source region \(target.location) added to the target regions (Azure requires it)" }
                let id = "distribute/gallery/\(label)/\(path)"
                publishByDefinition[key] = id
                var tags = source.tags
                tags[FactoryTag.record] = source.recordBlob.name
                tags[FactoryTag.factory] = factoryTag
                var spec = GalleryPublishSpec(definition: definitionID, imagePath: path, version: version, record: source.recordBlob, source: source.vhd,
                                              location: target.location, targetRegions: regions, tags: tags, excludeFromLatest: target.excludeFromLatest,
                                              endOfLife: wanted.endOfLife, endOfLifeDays: target.endOfLifeDays, capture: source.captureAction)
                spec.labServices = target.labServices
                result.actions.append(PlanAction(id: id, stage: .distribute, operation: .publishVersion(spec), reason: reason, dependsOn: dependsOn))
            }

            // Retirement: only versions and definitions carrying the factory's tags.
            for definition in (observed?.definitions ?? []).sorted(by: { $0.definition.id.name < $1.definition.id.name }) {
                let key = definition.definition.id.name.lowercased()
                let mine = definition.versions.filter { $0.tags[FactoryTag.imagePath] != nil && $0.tags[FactoryTag.factory] == factoryTag }
                    .sorted { VersionNumber($0.id.version) > VersionNumber($1.id.version) }
                var victims: [(GalleryImageVersion, String)] = []
                for version in mine {
                    let path = ImagePath.normalize(version.tags[FactoryTag.imagePath]!)
                    if configuration.template(at: path) == nil {
                        victims.append((version, "template \(path) no longer exists at this commit"))
                    } else if !target.subscribes(to: path) {
                        victims.append((version, "gallery \(target.galleryName) no longer lists \(path)"))
                    }
                }
                let live = mine.filter { version in !victims.contains { $0.0.id == version.id } }
                func settled(_ v: GalleryImageVersion) -> Bool { v.isFullyReplicated || (v.replication.isEmpty && v.provisioningState == "Succeeded") }
                // The current version counts as one kept once it is settled, or when this run publishes it:
                // the retirements then depend on that publish, so they happen only once every region is complete.
                let current = currentVersion[key]
                let currentSettled = current.map { c in live.first { $0.id.version == c }.map(settled) ?? false } ?? false
                let keep = max(0, target.imagesToSave - (publishByDefinition[key] != nil || currentSettled ? 1 : 0))
                let others = live.filter { $0.id.version != current }
                // A failed older version is no fallback: it goes, and never counts as one of those kept.
                for version in others where version.provisioningState.lowercased() == "failed" {
                    victims.append((version, "version \(version.id.version) failed and is not the current one"))
                }
                for version in others.filter(settled).dropFirst(keep) {
                    victims.append((version, "older than the newest \(target.imagesToSave) of \(definition.definition.id.name)"))
                }
                var retirements: [String] = []
                for (version, why) in victims {
                    let markOnly = target.retireMode == .excludeFromLatest && !version.excludeFromLatest
                    let id = "retire/gallery/\(label)/\(definition.definition.id.name)/\(version.id.version)"
                    retirements.append(id)
                    result.actions.append(PlanAction(id: id, stage: .retire,
                                                     operation: .retireVersion(GalleryVersionRetirementSpec(version: version.id, imagePath: version.tags[FactoryTag.imagePath],
                                                                                                            markOnly: markOnly, factory: factoryTag)),
                                                     reason: markOnly ? "\(why): marked exclude-from-latest now, deleted a run later" : why,
                                                     dependsOn: publishByDefinition[key].map { [$0] } ?? []))
                }
                // A definition the factory made goes once nothing is left in it and no template publishes to it.
                let foreign = definition.versions.contains { $0.tags[FactoryTag.imagePath] == nil }
                let otherFactories = definition.versions.contains { $0.tags[FactoryTag.imagePath] != nil && $0.tags[FactoryTag.factory] != factoryTag }
                let allGo = victims.count == mine.count && victims.allSatisfy { !(target.retireMode == .excludeFromLatest && !$0.0.excludeFromLatest) }
                if definition.definition.tags[FactoryTag.managedBy] != nil, definition.definition.tags[FactoryTag.factory] == factoryTag,
                   !currentDefinitions.contains(key), !foreign, !otherFactories, allGo {
                    result.actions.append(PlanAction(id: "retire/gallery/\(label)/definition/\(definition.definition.id.name)", stage: .retire,
                                                     operation: .deleteImageDefinition(GalleryDefinitionDeletionSpec(definition: definition.definition.id, factory: factoryTag)),
                                                     reason: "no template publishes to image definition \(definition.definition.id.name) any more, and it is empty once its versions are retired",
                                                     dependsOn: retirements))
                }
            }
        }
        return result
    }
}
