import FactoryModel
import Foundation

/// Reads the inventory with a bounded number of concurrent requests: a few reads per lab and
/// one per factory record, never labs × images.
public struct InventoryReader: Sendable {
    public var client: CloudClient
    public var concurrency: Int

    public init(client: CloudClient, concurrency: Int = 16) {
        self.client = client
        self.concurrency = concurrency
    }

    /// Reads what a run of `scope` plans from: the factory (its lab, VMs, images, records and
    /// deployments) always; the labs and galleries of the scope's targets (a shard reads its own
    /// only); and the labs removed from Labs.json when the scope does the factory's own work.
    public func read(_ full: FactoryConfiguration, scope: RunScope = .whole) async throws -> Inventory {
        let configuration = full.restricted(to: scope)
        let settings = configuration.settings
        let factoryID = LabID(subscriptionId: settings.subscriptionId, resourceGroup: settings.resourceGroup, name: settings.factoryLab)
        let backend = client.backend
        let factory: Lab
        do {
            factory = try await client.call { try await backend.getLab(factoryID) }
        } catch let error as CloudError where error.isNotFound {
            throw FactoryError(.invalidInput, "The factory lab \(factoryID) does not exist.",
                               hint: "Check factoryLab, subscriptionId and resourceGroup in FactorySettings.json (or run `imagefactory local init` for the local cloud).")
        }
        let container = ContainerID(account: factory.storageAccount, name: settings.container)
        async let vms = client.call { try await backend.listVirtualMachines(lab: factoryID) }
        async let factoryImages = client.call { try await backend.listCustomImages(lab: factoryID) }
        async let deployments = client.call { try await backend.listDeployments(subscriptionId: factoryID.subscriptionId, resourceGroup: factoryID.resourceGroup) }
        // The lock's own blobs are the lock's business, not inventory: a run holding the lock must not change the fingerprint.
        let blobs = try await listOrEmpty(container).filter { !FactoryStateBlobs.isState($0.id.name) }

        // Records: one read each, in parallel.
        let recordBlobs = blobs.filter { $0.id.name.lowercased().hasSuffix(".json") }
        let client = self.client
        let decoded: [(VhdRecord?, Diagnostic?)] = try await BoundedConcurrency.map(recordBlobs, limit: concurrency) { blob in
            do {
                let data = try await client.call { try await backend.getBlob(blob.id) }
                return (try VhdRecord.decode(data), nil)
            } catch let error as CloudError where error.isNotFound {
                return (nil, nil)  // deleted meanwhile
            } catch let error as DecodingError where Self.describe(error).contains("newer than this imagefactory") {
                throw FactoryError.invalidInput("The record \(blob.id.name) in the factory storage was written by a newer imagefactory (\(Self.describe(error))).",
                                                hint: "Upgrade imagefactory; nothing was changed.")
            } catch let error as DecodingError {
                return (nil, .warning("The record \(blob.id.name) in the factory storage cannot be read (\(Self.describe(error))); it is ignored and never deleted.",
                                      hint: "Fix or remove it by hand."))
            }
        }

        // Target labs: resolve resource groups once per subscription when Labs.json omits them.
        var labsBySubscription: [String: [Lab]] = [:]
        for sub in Set(configuration.labs.filter { $0.resourceGroup == nil }.map { $0.subscriptionId.lowercased() }) {
            labsBySubscription[sub] = (try? await client.call { try await backend.listLabs(subscriptionId: sub) }) ?? []
        }
        let lookup = labsBySubscription
        let labInventories: [LabInventory] = try await BoundedConcurrency.map(configuration.labs, limit: concurrency) { target in
            var id: LabID
            if let group = target.resourceGroup {
                id = LabID(subscriptionId: target.subscriptionId, resourceGroup: group, name: target.labName)
            } else if let found = lookup[target.subscriptionId.lowercased()]?.first(where: { $0.id.name.lowercased() == target.labName.lowercased() }) {
                id = found.id
            } else {
                return LabInventory(key: target.key, lab: nil, problem: "Lab \(target.labName) was not found in subscription \(target.subscriptionId).", images: [], blobs: [])
            }
            do {
                let requested = id
                let lab = try await client.call { try await backend.getLab(requested) }
                id = lab.id
                let labID = lab.id
                async let images = client.call { try await backend.listCustomImages(lab: labID) }
                let blobs = try await listIfExists(ContainerID(account: lab.storageAccount, name: settings.container))
                return LabInventory(key: target.key, lab: lab, problem: nil, images: try await images, blobs: blobs ?? [],
                                    hasTemporaryContainer: blobs != nil)
            } catch let error as CloudError where error.isNotFound || error.status == 403 {
                return LabInventory(key: target.key, lab: nil, problem: "Lab \(target.labName) (\(id.resourceGroup), \(id.subscriptionId)) cannot be read: \(error.message)", images: [], blobs: [])
            }
        }
        var inventory = Inventory(factory: factory, factoryVMs: try await vms, factoryImages: try await factoryImages,
                                  records: decoded.compactMap(\.0), factoryBlobs: blobs, labs: labInventories,
                                  deployments: try await deployments, problems: decoded.compactMap(\.1))
        let previous = try await previousTargets(container: container)
        inventory.previousTargets = previous
        if scope.includesFactoryWork {
            // Removed against the whole Labs.json: a lab of another shard is not removed.
            (inventory.removedLabs, inventory.goneTargets) = try await removedLabs(previous, configuration: full, current: labInventories)
        }
        inventory.galleries = try await galleries(configuration)
        return inventory
    }

    /// Each configured gallery: its definitions and their versions. A version of the factory's that
    /// is not settled is read again with its replication status (lists carry none).
    private func galleries(_ configuration: FactoryConfiguration) async throws -> [GalleryInventory] {
        let backend = client.backend
        let client = self.client
        return try await BoundedConcurrency.map(configuration.galleries, limit: concurrency) { target in
            let id = target.id
            let gallery: Gallery
            do {
                gallery = try await client.call { try await backend.getGallery(id) }
            } catch let error as CloudError where error.isNotFound {
                return GalleryInventory(key: target.key, gallery: nil)
            } catch let error as CloudError where error.status == 403 {
                return GalleryInventory(key: target.key, gallery: nil, problem: "Gallery \(target.galleryName) cannot be read: \(error.message)")
            }
            let definitions = try await client.call { try await backend.listImageDefinitions(id) }
            var result: [GalleryInventory.Definition] = []
            for definition in definitions {
                let listed = try await client.call { try await backend.listImageVersions(definition.id) }
                // The newest of the factory's versions is the one a run may still have to see replicated.
                let newest = listed.filter { $0.tags[FactoryTag.imagePath] != nil }.max { VersionNumber($0.id.version) < VersionNumber($1.id.version) }
                var versions: [GalleryImageVersion] = []
                for version in listed {
                    let unsettled = version.provisioningState != "Succeeded" || (version.id == newest?.id && version.replication.isEmpty)
                    if version.tags[FactoryTag.imagePath] != nil && unsettled {
                        let versionID = version.id
                        versions.append((try? await client.call { try await backend.getImageVersion(versionID) }) ?? version)
                    } else {
                        versions.append(version)
                    }
                }
                result.append(GalleryInventory.Definition(definition: definition, versions: versions))
            }
            return GalleryInventory(key: target.key, gallery: gallery, definitions: result)
        }
    }

    /// The labs of the last run's targets record.
    func previousTargets(container: ContainerID) async throws -> [LabID] {
        let backend = client.backend
        do {
            let data = try await client.call { try await backend.getBlob(BlobID(container: container, name: FactoryStateBlobs.targets)) }
            guard let record = try? JSONDecoder.iso.decode(TargetsRecord.self, from: data), record.formatVersion <= TargetsRecord.currentFormatVersion else {
                return []
            }
            return record.labs
        } catch let error as CloudError where error.isNotFound || error.code == "ContainerNotFound" {
            return []
        }
    }

    /// The labs of the last run's targets record that Labs.json no longer lists, with their images,
    /// and those that are gone (404). One that cannot be read now (403, a fault) is neither: it is
    /// remembered for a later run.
    private func removedLabs(_ previous: [LabID], configuration: FactoryConfiguration,
                             current: [LabInventory]) async throws -> ([LabInventory], Set<String>) {
        let backend = client.backend
        let client = self.client
        let currentKeys = Set(current.compactMap { $0.lab?.id.key })
        let removed = previous.filter { id in
            !currentKeys.contains(id.key) && !configuration.labs.contains { $0.identifies(id) }
        }
        let read: [(LabInventory?, String?)] = try await BoundedConcurrency.map(removed, limit: concurrency) { id in
            do {
                let lab = try await client.call { try await backend.getLab(id) }
                let images = try await client.call { try await backend.listCustomImages(lab: id) }
                return (LabInventory(key: id.key, lab: lab, problem: nil, images: images, blobs: []), nil)
            } catch let error as CloudError where error.isNotFound {
                return (nil, id.key)
            } catch let error as CloudError where error.status == 403 {
                return (nil, nil)
            }
        }
        return (read.compactMap(\.0), Set(read.compactMap(\.1)))
    }

    private func listOrEmpty(_ container: ContainerID) async throws -> [BlobProperties] {
        try await listIfExists(container) ?? []
    }

    /// The container's blobs, or nil when the container does not exist.
    private func listIfExists(_ container: ContainerID) async throws -> [BlobProperties]? {
        let backend = client.backend
        do {
            return try await client.call { try await backend.listBlobs(container: container, prefix: nil) }
        } catch let error as CloudError where error.code == "ContainerNotFound" {
            return nil
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .dataCorrupted(let c), .keyNotFound(_, let c), .typeMismatch(_, let c), .valueNotFound(_, let c):
            return c.debugDescription
        @unknown default:
            return "\(error)"
        }
    }
}
