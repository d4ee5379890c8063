// imagefactory-bench copy: server-side blob copies of a sparse VHD between two labs' storage
// accounts on the embedded local cloud, and what they cost in time and disk space.
//
//   imagefactory-bench copy [--copies 1000] [--size-gib 1] [--concurrency 4] [--dir PATH] [--keep]
import FactoryModel
import Foundation
import LocalCloud

enum CopyBenchmark {
    static let usage = """
        usage: imagefactory-bench copy [--copies N] [--size-gib N] [--concurrency N] [--dir PATH] [--keep]

          --copies N       blob copies to make (default 1000)
          --size-gib N     virtual size of the copied VHD in GiB (default 1)
          --concurrency N  copies in flight at once (default 4)
          --dir PATH       the local cloud's state directory (default: a fresh temporary directory)
          --keep           keep the state directory afterwards (default: delete it)
        """

    struct Options {
        var copies = 1000
        var sizeGiB = 1
        var concurrency = 4
        var dir: String?
        var keep = false

        static func parse(_ arguments: [String]) throws -> Options {
            var options = Options()
            var rest = arguments[...]
            func value(_ flag: String) throws -> String {
                guard let v = rest.popFirst() else { throw BenchError("\(flag) needs a value") }
                return v
            }
            func count(_ flag: String) throws -> Int {
                let text = try value(flag)
                guard let n = Int(text), n >= 1 else { throw BenchError("\(flag) needs an integer >= 1, not \"\(text)\"") }
                return n
            }
            while var flag = rest.popFirst() {
                if flag.hasPrefix("--"), let eq = flag.firstIndex(of: "=") {
                    rest.insert(String(flag[flag.index(after: eq)...]), at: rest.startIndex)
                    flag = String(flag[..<eq])
                }
                switch flag {
                case "--copies": options.copies = try count(flag)
                case "--size-gib": options.sizeGiB = try count(flag)
                case "--concurrency": options.concurrency = try count(flag)
                case "--dir": options.dir = try value(flag)
                case "--keep": options.keep = true
                case "-h", "--help":
                    print(usage)
                    exit(0)
                default: throw BenchError("unknown option \(flag)\n\n\(usage)")
                }
            }
            return options
        }
    }

    static func run(arguments: [String]) async throws {
        let options = try Options.parse(arguments)
        let directory = options.dir.map { URL(fileURLWithPath: $0) }
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("imagefactory-bench-copy-\(UUID().uuidString)")
        if FileManager.default.fileExists(atPath: directory.path) {
            throw BenchError("\(directory.path) exists; pass a new --dir (the benchmark needs an empty local cloud)")
        }
        defer { if !options.keep { try? FileManager.default.removeItem(at: directory) } }

        var latency = LatencyProfile.instant
        latency.windowsDiskBytes = Int64(options.sizeGiB) << 30
        let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: .none))
        let backend: any CloudBackend = cloud
        print("local cloud:  \(directory.path) (instant latency, throttling off)")

        // Two labs, each with its own storage account, and a captured golden image in the first.
        let setupStart = ContinuousClock.now
        let subscription = "00000000-0000-4000-8000-0000000be7c4"
        let source = try await cloud.createLab(LabID(subscriptionId: subscription, resourceGroup: "rg-factory", name: "FactoryLab"), location: "westeurope")
        let target = try await cloud.createLab(LabID(subscriptionId: subscription, resourceGroup: "rg-target", name: "TargetLab"), location: "westeurope")
        let sourceContainer = ContainerID(account: source.storageAccount, name: "imagefactoryvhds")
        let targetContainer = ContainerID(account: target.storageAccount, name: "vhds")
        try await backend.createContainer(sourceContainer)
        try await backend.createContainer(targetContainer)
        let golden = try await captureGoldenImage(backend, lab: source.id, into: sourceContainer)
        let goldenProperties = try await backend.getBlobProperties(golden)
        let goldenFile = try await cloud.blobFile(golden)
        let baseline = allocatedBytes(under: directory)
        print(String(format: "source VHD:   %@, %.2f GiB virtual, %@ allocated (setup %.2f s)", golden.description,
                     Double(goldenProperties.contentLength) / 1_073_741_824, megabytes(SparseFile.allocatedBytes(goldenFile)),
                     seconds(ContinuousClock.now - setupStart)))

        // The copies, with a bounded number in flight.
        print("copying:      \(options.copies) copies to \(targetContainer), \(options.concurrency) in flight")
        let start = ContinuousClock.now
        var latencies: [Double] = []
        latencies.reserveCapacity(options.copies)
        try await withThrowingTaskGroup(of: Double.self) { group in
            var next = 0
            while next < min(options.concurrency, options.copies) {
                let index = next
                group.addTask { try await copyOnce(backend, from: golden, to: BlobID(container: targetContainer, name: name(index))) }
                next += 1
            }
            while let elapsed = try await group.next() {
                latencies.append(elapsed)
                if next < options.copies {
                    let index = next
                    group.addTask { try await copyOnce(backend, from: golden, to: BlobID(container: targetContainer, name: name(index))) }
                    next += 1
                }
            }
        }
        let wall = seconds(ContinuousClock.now - start)

        // Check what arrived, then measure the disk.
        let copies = try await backend.listBlobs(container: targetContainer, prefix: "copy-")
        guard copies.count == options.copies, copies.allSatisfy({ $0.copyStatus == .success && $0.contentMD5 == goldenProperties.contentMD5 }) else {
            throw BenchError("expected \(options.copies) successful copies with the source's MD5, found \(copies.count)")
        }
        let sample = try await cloud.blobFile(copies[copies.count / 2].id)
        guard try SparseFile.md5(sample) == goldenProperties.contentMD5 else { throw BenchError("copy \(sample.lastPathComponent) differs from the source") }
        let after = allocatedBytes(under: directory)
        let copyFiles = try await copies.asyncMap { try await cloud.blobFile($0.id) }
        let copiesAllocated = copyFiles.reduce(Int64(0)) { $0 + SparseFile.allocatedBytes($1) }
        let virtual = Int64(options.copies) * goldenProperties.contentLength

        latencies.sort()
        print(String(format: "wall time:    %.2f s  (%.0f copies/s)", wall, Double(options.copies) / wall))
        print(String(format: "per copy:     p50 %.2f ms  p99 %.2f ms  max %.2f ms", percentile(latencies, 0.5) * 1000,
                     percentile(latencies, 0.99) * 1000, (latencies.last ?? 0) * 1000))
        print(String(format: "virtual size: %.1f GiB (%d × %.2f GiB)", Double(virtual) / 1_073_741_824, options.copies,
                     Double(goldenProperties.contentLength) / 1_073_741_824))
        print(String(format: "allocated:    copies %@ (%.4f%% of virtual, %@ per copy); state directory %@ in all, %@ added by the copies",
                     megabytes(copiesAllocated), Double(copiesAllocated) / Double(virtual) * 100,
                     kilobytes(copiesAllocated / Int64(options.copies)), megabytes(after), megabytes(after - baseline)))
        print(String(format: "verdict:      the sparse copies cost %.4f%% of their virtual size (target: well under 1%%)",
                     Double(after - baseline) / Double(virtual) * 100))
        if options.keep { print("kept:         \(directory.path)") }
    }

    static func name(_ index: Int) -> String { String(format: "copy-%05d.vhd", index) }

    /// Deploys a generalized Windows VM, waits for it to deallocate and exports its disk.
    static func captureGoldenImage(_ backend: any CloudBackend, lab: LabID, into container: ContainerID) async throws -> BlobID {
        let vm = VirtualMachineID(lab: lab, name: "golden01")
        let template = Data("""
            {"resources": [{"type": "Microsoft.DevTestLab/labs/virtualmachines", "name": "golden01",
              "properties": {"galleryImageReference": {"publisher": "MicrosoftWindowsServer", "offer": "WindowsServer",
                "sku": "2022-datacenter", "version": "latest", "osType": "Windows"}}}]}
            """.utf8)
        let artifactNames: [String] = ["windows-chrome", "windows-vscode", "windows-sysprep"]
        let artifacts = artifactNames.map { ArtifactReference(artifactId: "/artifactsources/public repo/artifacts/\($0)", name: $0) }
        _ = try await backend.deployVirtualMachine(VMDeploymentRequest(vm: vm, template: template, parameters: [:], artifacts: artifacts,
                                                                       tags: [:], deploymentName: "bench-golden01"))
        var machine = try await backend.getVirtualMachine(vm)
        while !machine.isDeallocated {
            guard machine.provisioningState != "Failed" else { throw BenchError("the golden VM failed to deploy") }
            try await Task.sleep(for: .seconds(machine.retryAfter ?? 0.05))
            machine = try await backend.getVirtualMachine(vm)
        }
        let blob = BlobID(container: container, name: "golden01.vhd")
        let export = try await backend.beginDiskExport(vm, to: blob, accessSeconds: 3600)
        _ = try await waitForCopy(backend, blob)
        _ = try await backend.endDiskExport(export)
        return blob
    }

    /// One copy, polled to completion; returns its duration in seconds.
    static func copyOnce(_ backend: any CloudBackend, from source: BlobID, to destination: BlobID) async throws -> Double {
        let start = ContinuousClock.now
        _ = try await backend.startBlobCopy(from: source, to: destination)
        _ = try await waitForCopy(backend, destination)
        return seconds(ContinuousClock.now - start)
    }

    static func waitForCopy(_ backend: any CloudBackend, _ blob: BlobID) async throws -> BlobProperties {
        while true {
            let properties = try await backend.getBlobProperties(blob)
            switch properties.copyStatus {
            case .pending: try await Task.sleep(for: .seconds(properties.retryAfter ?? 0.05))
            case .success, nil: return properties
            case .failed, .aborted: throw BenchError("the copy to \(blob) ended \(properties.copyStatus!.rawValue): \(properties.copyStatusDescription ?? "")")
            }
        }
    }

    /// Bytes the files under a directory occupy on disk (holes do not count).
    static func allocatedBytes(under directory: URL) -> Int64 {
        var total: Int64 = 0
        let enumerator = FileManager.default.enumerator(at: directory, includingPropertiesForKeys: [.isRegularFileKey])
        while let url = enumerator?.nextObject() as? URL {
            if (try? url.resourceValues(forKeys: [.isRegularFileKey]).isRegularFile) == true { total += SparseFile.allocatedBytes(url) }
        }
        return total
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
    }

    static func megabytes(_ bytes: Int64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
    static func kilobytes(_ bytes: Int64) -> String { String(format: "%.0f KiB", Double(bytes) / 1024) }
}

private extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        result.reserveCapacity(count)
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
