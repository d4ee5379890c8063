import FactoryModel
import Foundation
import LocalCloud
import Testing

/// Several local clouds on one state directory, as several `imagefactory` processes (the shards of
/// one factory) open it: they share ARM's write bucket, and a reader never sees a blob half made or
/// lose it to a writer replacing it.
@Suite("Local cloud shared by several processes")
struct SharedStateTests {
    static func open(_ directory: URL, throttle: ThrottleSettings = .off, clock: any FactoryClock) throws -> LocalCloud {
        try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: .instant, throttle: throttle, faults: .none), clock: clock)
    }

    @Test("two clouds on one state directory draw on one write bucket per subscription, as ARM's is the subscription's")
    func sharedWriteBucket() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("localcloud-shared-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let clock = ManualClock(now: Date())
        var throttle = ThrottleSettings.azure
        throttle.capacity = 4
        throttle.refillPerSecond = 1
        let first = try Self.open(directory, throttle: throttle, clock: clock)
        let second = try Self.open(directory, throttle: throttle, clock: clock)
        let subscription = "99999999-8888-4777-8666-555555555555"
        func gallery(_ n: Int) -> GalleryID { GalleryID(subscriptionId: subscription, resourceGroup: "rg", name: "gallery\(n)") }
        // Two writes each: the bucket of four is empty, whichever process asks next.
        for n in 0..<4 { _ = try await (n.isMultiple(of: 2) ? first : second).createGallery(gallery(n), location: "westeurope", description: "") }
        for cloud in [first, second] {
            do {
                _ = try await cloud.createGallery(gallery(9), location: "westeurope", description: "")
                Issue.record("a fifth write went through: each process had a bucket of its own")
            } catch let error as CloudError {
                #expect(error.status == 429 && error.code == "SubscriptionRequestsThrottled", "\(error)")
            }
        }
        clock.advance(by: 1.01)
        _ = try await second.createGallery(gallery(9), location: "westeurope", description: "")
        await #expect(throws: CloudError.self) { _ = try await first.createGallery(gallery(10), location: "westeurope", description: "") }
    }

    @Test("a blob read while another process replaces it again and again reads whole, old or new, never an error")
    func readWhileReplaced() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("localcloud-shared-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let clock = SystemClock()
        let writer = try Self.open(directory, clock: clock)
        let reader = try Self.open(directory, clock: clock)
        let lab = try await writer.createLab(LabID(subscriptionId: "11111111-2222-4333-8444-555555555555", resourceGroup: "rg", name: "Factory"), location: "westeurope")
        let container = ContainerID(account: lab.storageAccount, name: "imagefactoryvhds")
        try await writer.createContainer(container)
        let blob = BlobID(container: container, name: "imagefactory.targets.json")
        func content(_ n: Int) -> Data { Data(String(repeating: "record \(n);", count: 2000).utf8) }
        _ = try await writer.putBlob(blob, data: content(0), metadata: [:])
        let rounds = 300
        let reads = try await withThrowingTaskGroup(of: [Data].self) { group in
            group.addTask {
                for n in 1...rounds { _ = try await writer.putBlob(blob, data: content(n), metadata: [:]) }
                return []
            }
            group.addTask {
                var seen: [Data] = []
                for _ in 0..<rounds { seen.append(try await reader.getBlob(blob)) }
                return seen
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let valid = Set((0...rounds).map(content))
        #expect(reads.count == rounds)
        #expect(reads.allSatisfy(valid.contains), "a read saw a blob half written")
        #expect(Set(reads).count > 1, "not vacuous: the reader saw the blob change under it")
    }
}
