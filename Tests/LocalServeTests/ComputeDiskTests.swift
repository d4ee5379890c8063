import FactoryModel
import Foundation
import LocalCloud
@testable import LocalServe
import Testing

/// Microsoft.Compute virtual machines and disks as views of lab VMs, and disk export through
/// beginGetAccess / Copy Blob / endGetAccess.
@Suite struct ComputeDiskTests {
    static let computeAPI = "api-version=2024-07-01"

    /// A lab with a Linux VM that is ready and running (instant latency).
    func labWithVM(_ f: ServeFixture) async throws -> String {
        let account = try await f.createLab("Lab1")
        let body: JSONValue = ["location": "westeurope", "properties": [
            "galleryImageReference": ["offer": "o", "publisher": "p", "sku": "s", "osType": "Linux", "version": "latest"],
            "artifacts": [["artifactId": "/x/artifacts/linux-apt-package"]]]]
        let created = await f.arm("PUT", "\(f.labPath)/Lab1/virtualmachines/vm1", body)
        try #require(created.status == 201)
        return account
    }

    var compute: (ServeFixture) -> String { { "/subscriptions/\($0.sub)/resourceGroups/\($0.rg)/providers/Microsoft.Compute" } }

    /// Follows an operation's Location URL until it stops answering 202.
    func finish(_ f: ServeFixture, _ started: ServeResponse) async throws -> ServeResponse {
        var location = try #require(started.header("Location"))
        var response = await f.arm("GET", pathOf(location))
        for _ in 0..<1000 where response.status == 202 {
            f.clock.advance(by: Double(response.header("Retry-After") ?? "1") ?? 1)
            location = response.header("Location") ?? location
            response = await f.arm("GET", pathOf(location))
        }
        return response
    }

    /// A request on a disk SAS URL: no bearer token, the SAS is the credential.
    func sas(_ f: ServeFixture, _ method: String, _ url: String, headers: [(name: String, value: String)] = []) async -> ServeResponse {
        await f.service.respond(ServeRequest(method: method, target: pathOf(url), headers: [("Host", "127.0.0.1:1"), ("x-ms-version", "2026-02-06")] + headers,
                                             body: Data(), scheme: "http"))
    }

    @Test func computeVMIsAViewOfTheLabVMWithPowerStateAndOSDisk() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        _ = try await labWithVM(f)
        let labVM = f.json(await f.arm("GET", "\(f.labPath)/Lab1/virtualmachines/vm1"))
        let computeID = try #require(labVM["properties"]?["computeId"]?.string)
        #expect(computeID == "\(compute(f))/virtualMachines/vm1")

        let vm = await f.arm("GET", "\(computeID)?$expand=instanceView&\(Self.computeAPI)")
        #expect(vm.status == 200)
        let body = f.json(vm)
        #expect(body["id"]?.string == computeID)
        #expect(body["type"]?.string == "Microsoft.Compute/virtualMachines")
        let codes = body["properties"]?["instanceView"]?["statuses"]?.array?.compactMap { $0["code"]?.string } ?? []
        #expect(codes == ["ProvisioningState/succeeded", "PowerState/running"])
        let osDisk = body["properties"]?["storageProfile"]?["osDisk"]
        #expect(osDisk?["osType"]?.string == "Linux")
        let diskID = try #require(osDisk?["managedDisk"]?["id"]?.string)
        #expect(diskID == "\(compute(f))/disks/vm1_OsDisk")
        // Without $expand there is no instance view; the instanceView sub-resource has it.
        #expect(f.json(await f.arm("GET", "\(computeID)?\(Self.computeAPI)"))["properties"]?["instanceView"] == nil)
        let view = f.json(await f.arm("GET", "\(computeID)/instanceView?\(Self.computeAPI)"))
        #expect(view["statuses"]?.array?.last?["code"]?.string == "PowerState/running")

        let list = f.json(await f.arm("GET", "\(compute(f))/virtualMachines?\(Self.computeAPI)"))
        #expect(list["value"]?.array?.compactMap { $0["name"]?.string } == ["vm1"])
        let otherGroup = await f.arm("GET", "/subscriptions/\(f.sub)/resourceGroups/other/providers/Microsoft.Compute/virtualMachines?\(Self.computeAPI)")
        #expect(f.json(otherGroup)["value"]?.array?.isEmpty == true)

        let disk = f.json(await f.arm("GET", "\(diskID)?\(Self.computeAPI)"))
        #expect(disk["properties"]?["diskState"]?.string == "Attached")
        #expect(disk["properties"]?["osType"]?.string == "Linux")
        #expect(disk["properties"]?["diskSizeBytes"]?.int == Int(LatencyProfile.instant.linuxDiskBytes))
        #expect(disk["properties"]?["diskSizeGB"]?.int == 1)
        #expect(disk["managedBy"]?.string == computeID)

        let missing = await f.arm("GET", "\(compute(f))/virtualMachines/nope?\(Self.computeAPI)")
        #expect(missing.status == 404)
        #expect(f.json(missing)["error"]?["code"]?.string == "ResourceNotFound")
        #expect(await f.arm("GET", "\(compute(f))/disks/vm1?\(Self.computeAPI)").status == 404)
        #expect(await f.arm("DELETE", "\(computeID)?\(Self.computeAPI)").status == 405)
    }

    @Test func grantAccessCopyTheSASThenRevoke() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await labWithVM(f)
        let disk = "\(compute(f))/disks/vm1_OsDisk"
        let grantBody: JSONValue = ["access": "Read", "durationInSeconds": 3600]

        // A running VM's disk is attached and locked.
        let refused = await f.arm("POST", "\(disk)/beginGetAccess?\(Self.computeAPI)", grantBody)
        #expect(refused.status == 409)
        #expect(f.json(refused)["error"]?["code"]?.string == "OperationNotAllowed")

        let stop = await f.arm("POST", "\(f.labPath)/Lab1/virtualmachines/vm1/stop")
        #expect(try await finish(f, stop).status == 204)
        #expect(f.json(await f.arm("GET", "\(disk)?\(Self.computeAPI)"))["properties"]?["diskState"]?.string == "Reserved")

        let granted = await f.arm("POST", "\(disk)/beginGetAccess?\(Self.computeAPI)", grantBody)
        #expect(granted.status == 202)
        #expect(granted.header("Azure-AsyncOperation") != nil)
        #expect(granted.header("Retry-After").flatMap(Int.init) != nil)
        let status = f.json(await f.arm("GET", pathOf(try #require(granted.header("Azure-AsyncOperation")))))
        #expect(status["status"]?.string == "Succeeded")
        let result = try await finish(f, granted)
        #expect(result.status == 200)
        let sasURL = try #require(f.json(result)["accessSAS"]?.string)
        #expect(sasURL.hasPrefix("http://127.0.0.1:1/md-"))
        #expect(sasURL.contains("sig="))
        #expect(f.json(await f.arm("GET", "\(disk)?\(Self.computeAPI)"))["properties"]?["diskState"]?.string == "ActiveSAS")

        // The SAS reads the disk as a VHD, without a bearer token.
        let size = Int(LatencyProfile.instant.linuxDiskBytes) + VirtualDisk.footerSize
        let head = await sas(f, "HEAD", sasURL)
        #expect(head.status == 200)
        #expect(head.header("Content-Length") == String(size))
        #expect(head.header("x-ms-blob-type") == "PageBlob")
        let footer = await sas(f, "GET", sasURL, headers: [("x-ms-range", "bytes=\(size - 512)-\(size - 1)")])
        #expect(footer.status == 206)
        #expect(footer.body.count == 512)
        #expect(footer.body.prefix(8) == Data("conectix".utf8))
        let whole = await sas(f, "GET", sasURL)
        #expect(whole.status == 200)
        #expect(whole.body.count == size)
        #expect(await sas(f, "PUT", sasURL).status == 403)  // read-only
        let forged = sasURL.replacingOccurrences(of: "sig=", with: "sig=0")
        #expect(await sas(f, "GET", forged).status == 403)

        // While the SAS is active the VM cannot start.
        let start = await f.arm("POST", "\(f.labPath)/Lab1/virtualmachines/vm1/start")
        #expect(start.status == 409)
        #expect(f.json(start)["error"]?["code"]?.string == "OperationNotAllowed")

        // Copy Blob from the SAS into the lab's storage account: the original factory's export.
        _ = await f.blob("PUT", "/\(account)/exports?restype=container")
        let copy = await f.blob("PUT", "/\(account)/exports/osdisk.vhd", headers: [("x-ms-copy-source", sasURL)])
        #expect(copy.status == 202)
        var properties = await f.blob("HEAD", "/\(account)/exports/osdisk.vhd")
        for _ in 0..<1000 where properties.header("x-ms-copy-status") == "pending" {
            f.clock.advance(by: 0.5)
            properties = await f.blob("HEAD", "/\(account)/exports/osdisk.vhd")
        }
        #expect(properties.header("x-ms-copy-status") == "success")
        #expect(properties.header("x-ms-copy-source") == sasURL)
        let copied = await f.blob("GET", "/\(account)/exports/osdisk.vhd")
        #expect(copied.body == whole.body)

        let revoked = await f.arm("POST", "\(disk)/endGetAccess?\(Self.computeAPI)")
        #expect(revoked.status == 202)
        #expect(try await finish(f, revoked).status == 204)
        let after = await sas(f, "GET", sasURL)
        #expect(after.status == 403)
        #expect(after.header("x-ms-error-code") == "AuthenticationFailed")
        let copyAfter = await f.blob("PUT", "/\(account)/exports/again.vhd", headers: [("x-ms-copy-source", sasURL)])
        #expect(copyAfter.status == 403)
        #expect(copyAfter.header("x-ms-error-code") == "CannotVerifyCopySource")
        #expect(f.json(await f.arm("GET", "\(disk)?\(Self.computeAPI)"))["properties"]?["diskState"]?.string == "Reserved")
        #expect(await f.arm("POST", "\(f.labPath)/Lab1/virtualmachines/vm1/start").status == 202)
        // The exported VHD goes with the revoke (after the record, crash-safe order).
        let exported = (try? FileManager.default.contentsOfDirectory(atPath: f.directory.appendingPathComponent("disks").path)) ?? []
        #expect(exported.isEmpty)
    }

    @Test func grantAccessValidatesItsBody() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        _ = try await labWithVM(f)
        _ = try await finish(f, await f.arm("POST", "\(f.labPath)/Lab1/virtualmachines/vm1/stop"))
        let disk = "\(compute(f))/disks/vm1_OsDisk"
        let noDuration = await f.arm("POST", "\(disk)/beginGetAccess?\(Self.computeAPI)", ["access": "Read"])
        #expect(noDuration.status == 400)
        let write = await f.arm("POST", "\(disk)/beginGetAccess?\(Self.computeAPI)", ["access": "Write", "durationInSeconds": 60])
        #expect(write.status == 409)
        #expect(f.json(write)["error"]?["code"]?.string == "OperationNotAllowed")
        let unknownDisk = await f.arm("POST", "\(compute(f))/disks/nope_OsDisk/beginGetAccess?\(Self.computeAPI)", ["access": "Read", "durationInSeconds": 60])
        #expect(unknownDisk.status == 404)
        // Revoking with nothing granted succeeds, as endGetAccess does.
        #expect(await f.arm("POST", "\(disk)/endGetAccess?\(Self.computeAPI)").status == 202)
    }
}
