import FactoryModel
import Foundation

// Resource records as the local cloud stores them (JSON bodies in SQLite). State that changes
// with time (a VM finishing its deployment, a copy completing) is stored as the moments it
// happens, and read back as of "now": a restart or another process sees the same cloud.

struct LabRecord: Codable, Sendable {
    var id: LabID
    var location: String
    var storageAccount: StorageAccountID
    var createdAt: Date
}

struct PlannedArtifact: Codable, Sendable {
    var name: String
    var parameters: [ArtifactParameter]
    var failure: String?
}

/// A moment from which a VM has a power state.
struct PowerEvent: Codable, Sendable {
    var at: Date
    var state: String
}

struct VMRecord: Codable, Sendable {
    var id: VirtualMachineID
    var osType: OSType
    var tags: [String: String]
    var baseImage: String
    var artifacts: [PlannedArtifact]
    var createdAt: Date
    /// When the deployment (and artifacts) finish.
    var readyAt: Date
    /// Set when provisioning itself fails at `readyAt`.
    var provisioningFailure: String?
    var powerEvents: [PowerEvent]
    /// When sysprep / deprovision completed; such a VM can be captured generalized but not started.
    var generalizedAt: Date?
    var deploymentName: String

    func view(at now: Date) -> LabVirtualMachine {
        let provisioning: String
        if now < readyAt { provisioning = "Creating" } else { provisioning = provisioningFailure == nil ? "Succeeded" : "Failed" }
        var power = "Starting"
        for event in powerEvents where event.at <= now { power = event.state }
        if provisioningFailure != nil && now >= readyAt { power = "Unknown" }
        var results: [ArtifactResult] = []
        var failed = false
        let total = max(1, artifacts.count)
        let perArtifact = readyAt.timeIntervalSince(createdAt) / Double(total + 1)
        for (i, artifact) in artifacts.enumerated() {
            let doneAt = createdAt.addingTimeInterval(perArtifact * Double(i + 2))
            if failed {
                results.append(ArtifactResult(name: artifact.name, status: now >= readyAt ? "Skipped" : "Pending"))
            } else if now >= doneAt || now >= readyAt {
                if let failure = artifact.failure {
                    failed = true
                    results.append(ArtifactResult(name: artifact.name, status: "Failed", message: failure))
                } else {
                    results.append(ArtifactResult(name: artifact.name, status: "Succeeded"))
                }
            } else {
                results.append(ArtifactResult(name: artifact.name, status: i == 0 || now >= doneAt.addingTimeInterval(-perArtifact) ? "Installing" : "Pending"))
            }
        }
        let nextChange = ([readyAt] + powerEvents.map(\.at)).filter { $0 > now }.min()
        return LabVirtualMachine(
            id: id, provisioningState: ProvisioningState(provisioning), powerState: PowerState(power), osType: osType, tags: tags, artifacts: results,
            createdAt: createdAt, generalized: generalizedAt.map { $0 <= now } ?? false,
            retryAfter: nextChange.map { max(0.01, $0.timeIntervalSince(now)) })
    }

    func power(at now: Date) -> String { view(at: now).powerState.rawValue }

    /// What the OS disk holds as of now.
    func diskContent(at now: Date, size: Int64) -> VirtualDisk.Content {
        let view = self.view(at: now)
        let applied = zip(artifacts, view.artifacts).filter { $0.1.status == "Succeeded" }
            .map { a, _ in a.parameters.isEmpty ? a.name : a.name + "(" + a.parameters.map { "\($0.name)=\($0.value)" }.joined(separator: ",") + ")" }
        return VirtualDisk.Content(osType: osType, baseImage: baseImage, artifacts: applied, generalized: view.generalized, virtualSize: size)
    }
}

struct CopyState: Codable, Sendable {
    var status: CopyStatus
    var completesAt: Date
    var source: String
    /// Set when the copy fails (at `completesAt`).
    var failure: String?
    var totalBytes: Int64
    /// The disk access (SAS) the copy reads from, when its source is a managed disk: revoking the
    /// access before the copy completes fails it, as in Azure.
    var sourceDiskAccess: String? = nil
    /// With a per-source read bandwidth: which source the copy reads (copies of one source share its
    /// bandwidth fairly), and the data bytes it had left to read at `sharedSince`.
    var sourceKey: String? = nil
    var remainingBytes: Double? = nil
    var sharedSince: Date? = nil
}

/// Processor sharing of one source's read bandwidth among the copies reading it: every copy in
/// flight gets an equal share, and a copy that ends frees its share for the others. Pure, so a
/// copy's end is data computed when copies start, as every emulated duration here.
enum SharedBandwidth {
    /// When each copy ends, all starting at `start` with `remaining` bytes each.
    static func ends(remaining: [Double], bandwidth: Double, from start: Date) -> [Date] {
        let order = remaining.indices.sorted { remaining[$0] < remaining[$1] }
        var ends = [Date](repeating: start, count: remaining.count)
        var t = start
        var served = 0.0
        var active = Double(remaining.count)
        for i in order {
            t = t.addingTimeInterval(max(0, remaining[i] - served) * active / bandwidth)
            served = max(served, remaining[i])
            ends[i] = t
            active -= 1
        }
        return ends
    }

    /// Bytes each copy still has to read at `now` (0 once it ended).
    static func remaining(_ remaining: [Double], bandwidth: Double, from start: Date, at now: Date) -> [Double] {
        let order = remaining.indices.sorted { remaining[$0] < remaining[$1] }
        var t = start
        var served = 0.0
        var active = Double(remaining.count)
        for i in order {
            let phaseEnd = t.addingTimeInterval(max(0, remaining[i] - served) * active / bandwidth)
            if phaseEnd > now {
                served += max(0, now.timeIntervalSince(t)) * bandwidth / active
                break
            }
            t = phaseEnd
            served = max(served, remaining[i])
            active -= 1
        }
        return remaining.map { max(0, $0 - served) }
    }
}

struct BlobRecord: Codable, Sendable {
    var id: BlobID
    /// Nil for a block blob (and in state written before page blobs were told apart).
    var type: BlobType?
    /// File name under the state directory's `blobs/` folder.
    var file: String
    var size: Int64
    var md5: String?
    var metadata: [String: String]
    var lastModified: Date
    var copy: CopyState?
    var lease: Lease?

    struct Lease: Codable, Sendable {
        var id: String
        var expiresAt: Date
        /// Seconds a renewal extends the lease by; -1 for infinite.
        var duration: Double?
        /// Set by Break Lease: the lease ends at `expiresAt` and cannot be renewed.
        var breaking: Bool?
    }

    func properties(at now: Date) -> BlobProperties {
        guard let copy else {
            return BlobProperties(id: id, blobType: blobType, contentLength: size, contentMD5: md5, lastModified: lastModified, metadata: metadata)
        }
        var status = copy.status
        var description: String?
        if status == .pending && now >= copy.completesAt {
            if let failure = copy.failure { status = .failed; description = failure } else { status = .success }
        }
        let pending = status == .pending
        let progress = pending ? "\(Int64(Double(copy.totalBytes) * max(0, min(0.99, 1 - copy.completesAt.timeIntervalSince(now) / max(0.001, copy.completesAt.timeIntervalSince(lastModified))))))/\(copy.totalBytes)" : "\(status == .success ? copy.totalBytes : 0)/\(copy.totalBytes)"
        return BlobProperties(
            id: id, blobType: blobType, contentLength: size, contentMD5: status == .success ? md5 : nil, lastModified: lastModified, metadata: metadata,
            copyStatus: status, copyStatusDescription: description, copyProgress: progress,
            retryAfter: pending ? max(0.01, copy.completesAt.timeIntervalSince(now)) : nil)
    }

    var blobType: BlobType { type ?? .blockBlob }

    func isComplete(at now: Date) -> Bool {
        guard let copy else { return true }
        return copy.failure == nil && (copy.status == .success || (copy.status == .pending && now >= copy.completesAt))
    }
}

struct ContainerRecord: Codable, Sendable {
    var id: ContainerID
    var createdAt: Date
}

struct ImageRecord: Codable, Sendable {
    var id: CustomImageID
    var osType: OSType
    var sysprep: Bool
    var description: String
    var author: String
    var tags: [String: String]
    var createdAt: Date
    var readyAt: Date
    var failure: String?
    var vhd: String?
    /// The image's own copy of the disk (a hard link of the source VHD), under `images/`.
    var file: String?
    var md5: String?

    func view(at now: Date) -> CustomImage {
        let state = now < readyAt ? "Creating" : (failure == nil ? "Succeeded" : "Failed")
        return CustomImage(id: id, provisioningState: ProvisioningState(state), osType: osType, sysprep: sysprep, description: description, tags: tags,
                           createdAt: createdAt, vhd: vhd, retryAfter: now < readyAt ? max(0.01, readyAt.timeIntervalSince(now)) : nil)
    }
}

struct DeploymentRecord: Codable, Sendable {
    var subscriptionId: String
    var resourceGroup: String
    var name: String
    var startedAt: Date
    var completesAt: Date
    var failed: Bool

    func view(at now: Date) -> Deployment {
        Deployment(subscriptionId: subscriptionId, resourceGroup: resourceGroup, name: name,
                   provisioningState: now < completesAt ? "Running" : (failed ? "Failed" : "Succeeded"), timestamp: startedAt)
    }
}

struct OperationRecord: Codable, Sendable {
    var id: String
    var completesAt: Date
    var error: CloudError?
}

struct GalleryRecord: Codable, Sendable {
    var gallery: Gallery
    var readyAt: Date
}

struct ImageDefinitionRecord: Codable, Sendable {
    var definition: GalleryImageDefinition
    var readyAt: Date
}

struct ImageVersionRecord: Codable, Sendable {
    var id: GalleryImageVersionID
    var location: String
    var tags: [String: String]
    var targetRegions: [TargetRegion]
    var createdAt: Date
    /// When each region's current replication attempt ends.
    var regionReadyAt: [String: Date]
    /// The whole version failed (the source could not be read): no update mends it.
    var failure: String?
    var file: String?
    /// Regions whose current attempt ends Failed, with the reason.
    var regionFailures: [String: String]?
    /// Replication attempts so far per region (persisted, so "fail the first N" holds across processes).
    var regionAttempts: [String: Int]?
    var excludeFromLatest: Bool?
    var endOfLife: Date?
    /// Set by the first update: the version is then "Updating" while a region replicates again.
    var updatedAt: Date?

    func view(at now: Date) -> GalleryImageVersion {
        var replication: [RegionReplication] = []
        for region in targetRegions {
            let ready = regionReadyAt[region.name] ?? createdAt
            if now >= ready {
                let failed = failure != nil || regionFailures?[region.name] != nil
                replication.append(RegionReplication(region: region.name, state: failed ? "Failed" : "Completed", progress: failed ? 0 : 100))
            } else {
                let start = min(ready, max(createdAt, updatedAt ?? createdAt))
                let total = max(0.001, ready.timeIntervalSince(start))
                let progress = Int(min(99, max(0, now.timeIntervalSince(start) / total * 100)))
                replication.append(RegionReplication(region: region.name, state: "Replicating", progress: progress))
            }
        }
        let replicating = replication.contains { $0.state == "Replicating" }
        let failed = replication.contains { $0.state == "Failed" }
        let aggregated = replicating ? "InProgress" : (failed ? "Failed" : "Completed")
        let provisioning: String
        if failure != nil && !replicating { provisioning = "Failed" }
        else if replicating { provisioning = updatedAt == nil ? "Creating" : "Updating" }
        else { provisioning = failed ? "Failed" : "Succeeded" }
        let next = regionReadyAt.values.filter { $0 > now }.min()
        return GalleryImageVersion(id: id, location: location, provisioningState: provisioning, tags: tags, targetRegions: targetRegions,
                                   aggregatedReplicationState: aggregated, replication: replication, createdAt: createdAt,
                                   retryAfter: next.map { max(0.01, $0.timeIntervalSince(now)) },
                                   excludeFromLatest: excludeFromLatest ?? false, endOfLife: endOfLife)
    }
}
