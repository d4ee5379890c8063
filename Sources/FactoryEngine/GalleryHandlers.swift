import FactoryModel
import Foundation

/// Publishing to Azure Compute Gallery: what each gallery action does against the backend.
///
/// A version is published when every target region's replica is Completed, not when the
/// version's provisioning state says Succeeded. A region that fails is replicated again alone
/// (the version's target regions are updated, which leaves completed regions as they are); a
/// version whose source region failed failed as a whole and is deleted and made again. Only
/// versions, definitions and galleries carrying the factory's tags are ever changed.
extension ActionHandlers {
    /// How many times one region is retried, and one version made again, before the action fails.
    static let regionRetries = 3
    static let versionRemakes = 2

    func ensureGallery(_ spec: GallerySpec) async throws {
        let backend = self.backend
        if let existing = try? await client.call({ try await backend.getGallery(spec.gallery) }), existing.provisioningState == "Succeeded" { return }
        let handle = try await client.call { try await backend.createGallery(spec.gallery, location: spec.location, description: spec.description, tags: spec.tags) }
        try await client.wait(for: handle, timeout: timeoutSeconds)
    }

    func ensureImageDefinition(_ spec: GalleryDefinitionSpec) async throws {
        let backend = self.backend
        let wanted = spec.definition
        if let existing = try? await client.call({ try await backend.getImageDefinition(wanted.id) }) {
            guard existing.osType == wanted.osType, existing.osState == wanted.osState else {
                throw FactoryError(.workFailed, "Image definition \(wanted.id.name) exists as \(existing.osType.rawValue) \(existing.osState.rawValue); \(spec.imagePath) needs \(wanted.osType.rawValue) \(wanted.osState.rawValue).")
            }
            return
        }
        let handle = try await client.call { try await backend.createImageDefinition(wanted) }
        try await client.wait(for: handle, timeout: timeoutSeconds)
    }

    func publishVersion(_ spec: GalleryPublishSpec, actionID: String) async throws {
        let backend = self.backend
        let version: String
        if let planned = spec.version {
            version = planned
        } else if let capture = spec.capture, let record = await state.capture(capture) {
            version = GalleryVersioning.version(for: record)
        } else {
            // The record exists but was made by an earlier execution of this plan: read it.
            let data = try await client.call { try await backend.getBlob(spec.record) }
            version = GalleryVersioning.version(for: try VhdRecord.decode(data))
        }
        if spec.labServices, let capture = spec.capture, let record = await state.capture(capture) {
            let problems = GalleryTarget.labServicesProblems(record: record)
            if !problems.isEmpty {
                throw FactoryError(.workFailed, "\(spec.imagePath) is not published to \(spec.definition.gallery.name), a gallery for Azure Lab Services: " + problems.joined(separator: "; "))
            }
        }
        let id = GalleryImageVersionID(definition: spec.definition, version: version)
        let label = "\(spec.definition.gallery.name)/\(spec.definition.name)/\(version)"
        var remakes = 0
        var regionRetries: [String: Int] = [:]
        while true {
            let current: GalleryImageVersion?
            do {
                current = try await client.call { try await backend.getImageVersion(id) }
            } catch let error as CloudError where error.isNotFound {
                current = nil
            }
            guard let current else {
                try await createVersion(spec, id: id)
                continue
            }
            guard current.tags[FactoryTag.imagePath] != nil, current.tags[FactoryTag.factory].map({ $0 == spec.tags[FactoryTag.factory] }) ?? true else {
                throw FactoryError(.workFailed, "Gallery version \(label) exists and is not this factory's; it was left alone.")
            }
            let settled = try await waitForReplication(id, label: label)
            await state.addPublished(actionID, settled)
            let sourceFailed = settled.replication.contains { Location.normalize($0.region) == Location.normalize(spec.location) && $0.state.lowercased() == "failed" }
            if sourceFailed || (settled.provisioningState.lowercased() == "failed" && settled.failedRegions.isEmpty) {
                // Failed as a whole: delete it and make it again.
                remakes += 1
                guard remakes <= Self.versionRemakes else {
                    throw FactoryError(.workFailed, "Gallery version \(label) failed as a whole \(remakes) times; it is left as it is for a look, and the next run makes it again.")
                }
                events(.note("\(label): failed as a whole; deleting it to make it again (\(remakes) of \(Self.versionRemakes))"))
                let deletion = try await client.call { try await backend.deleteImageVersion(id) }
                try await client.wait(for: deletion, timeout: timeoutSeconds)
                continue
            }
            let wanted = Set(spec.targetRegions.map { Location.normalize($0.name) })
            let have = Set(settled.targetRegions.map { Location.normalize($0.name) })
            let failed = settled.failedRegions
            if failed.isEmpty && wanted == have && settled.isFullyReplicated { return }
            for region in failed {
                regionRetries[region, default: 0] += 1
                guard regionRetries[region]! <= Self.regionRetries else {
                    throw FactoryError(.workFailed, "Gallery version \(label): replication to \(region) failed \(Self.regionRetries + 1) times; the other regions are complete.")
                }
            }
            events(.note(failed.isEmpty
                ? "\(label): target regions changed; updating to \(spec.targetRegions.map(\.name).joined(separator: ", "))"
                : "\(label): replication to \(failed.joined(separator: ", ")) failed; retrying \(failed.count == 1 ? "that region" : "those regions") alone"))
            if failed.contains(where: { (regionRetries[$0] ?? 0) > 1 }) {
                // Azure's advice when replicating again did not help: remove the failed regions, then add them back.
                let without = spec.targetRegions.filter { region in !failed.contains { Location.normalize($0) == Location.normalize(region.name) } }
                let removal = try await client.call { try await backend.updateImageVersion(id, targetRegions: without, excludeFromLatest: nil) }
                try await waitTolerating(removal)
            }
            let update = try await client.call { try await backend.updateImageVersion(id, targetRegions: spec.targetRegions, excludeFromLatest: nil) }
            try await waitTolerating(update)
        }
    }

    /// Waits for an operation on a version; a failure of the operation itself (a region failed, in
    /// whatever words the service uses) is not the end: the caller reads the version and decides.
    /// Sign-in and access failures, and cancellation, still end the action.
    private func waitTolerating(_ handle: OperationHandle) async throws {
        do {
            try await client.wait(for: handle, timeout: timeoutSeconds)
        } catch let error as CloudError where !error.isUnavailable && error.code != "OperationTimedOut" {
            events(.note("the gallery operation ended with \(error.code): \(error.message)"))
        }
    }

    private func createVersion(_ spec: GalleryPublishSpec, id: GalleryImageVersionID) async throws {
        let backend = self.backend
        var tags = spec.tags
        tags[FactoryTag.runID] = runID
        let endOfLife = spec.endOfLife ?? spec.endOfLifeDays.map { clock.now().addingTimeInterval(Double($0) * 86_400) }
        let request = GalleryImageVersionRequest(id: id, location: spec.location, sourceVHD: spec.source, targetRegions: spec.targetRegions,
                                                 tags: tags, excludeFromLatest: spec.excludeFromLatest, endOfLife: endOfLife)
        let handle: OperationHandle
        do {
            handle = try await client.call { try await backend.createImageVersion(request) }
        } catch let error as CloudError where error.status == 409 {
            return  // a create that went through on an earlier try: the caller reads the version and decides
        }
        try await waitTolerating(handle)
    }

    /// Polls a version until no region is replicating, reporting each region's progress when it changes.
    private func waitForReplication(_ id: GalleryImageVersionID, label: String) async throws -> GalleryImageVersion {
        let backend = self.backend
        let progress = ProgressMemo()
        let events = self.events
        return try await client.poll(timeout: timeoutSeconds, what: "Replication of \(label)", read: { try await backend.getImageVersion(id) },
                                     hint: { $0.retryAfter }, done: { version in
            let text = version.replication.map { "\($0.region) \($0.state.lowercased())\($0.state.lowercased() == "replicating" ? " \($0.progress)%" : "")" }.joined(separator: ", ")
            if progress.changed(text) { events(.note("\(label): \(text)")) }
            return ["succeeded", "failed", "canceled"].contains(version.provisioningState.lowercased())
                && !version.replication.contains { $0.state.lowercased() == "replicating" }
        })
    }

    func retireVersion(_ spec: GalleryVersionRetirementSpec) async throws {
        let backend = self.backend
        let version: GalleryImageVersion
        do {
            version = try await client.call { try await backend.getImageVersion(spec.version) }
        } catch let error as CloudError where error.isNotFound { return }
        // Never touch a version this factory did not make: check the tags again right before.
        guard version.tags[FactoryTag.imagePath] != nil, version.tags[FactoryTag.factory] == spec.factory else {
            throw FactoryError(.workFailed, "Gallery version \(spec.version.version) of \(spec.version.definition.name) is not this factory's (tags changed); it was left alone.")
        }
        // Nor the version this execution just published, whatever the plan said.
        if await state.published.values.contains(where: { $0.id == spec.version }) {
            throw FactoryError(.workFailed, "Gallery version \(spec.version.version) of \(spec.version.definition.name) was published by this run; it is not retired.")
        }
        let handle = spec.markOnly
            ? try await client.call { try await backend.updateImageVersion(spec.version, targetRegions: nil, excludeFromLatest: true) }
            : try await client.call { try await backend.deleteImageVersion(spec.version) }
        try await client.wait(for: handle, timeout: timeoutSeconds)
    }

    func deleteImageDefinition(_ id: GalleryImageDefinitionID, factoryTag: String) async throws {
        let backend = self.backend
        let definition: GalleryImageDefinition
        do {
            definition = try await client.call { try await backend.getImageDefinition(id) }
        } catch let error as CloudError where error.isNotFound { return }
        guard definition.tags[FactoryTag.managedBy] != nil, definition.tags[FactoryTag.factory] == factoryTag else {
            throw FactoryError(.workFailed, "Image definition \(id.name) was not made by the factory; it was left alone.")
        }
        let handle = try await client.call { try await backend.deleteImageDefinition(id) }
        try await client.wait(for: handle, timeout: timeoutSeconds)
    }
}

/// The last progress line a poll reported (a lock-box: the poll's `done` closure is synchronous).
final class ProgressMemo: @unchecked Sendable {
    // @unchecked: `last` is only touched under `lock`.
    private let lock = NSLock()
    private var last = ""
    func changed(_ text: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard text != last else { return false }
        last = text
        return true
    }
}
