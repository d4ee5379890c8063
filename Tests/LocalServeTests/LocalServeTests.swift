import FactoryModel
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import LocalCloud
@testable import LocalServe
import Testing

/// A local cloud in a temporary directory with its REST face, called in-process (no socket) unless a
/// test starts the listener. Requests carry a valid management token unless told otherwise.
struct ServeFixture {
    let service: LocalServeService
    let directory: URL
    /// The emulated services' time: tests move it instead of sleeping.
    let clock: ManualClock
    let sub = "11111111-1111-1111-1111-111111111111"
    let rg = "rg"
    var token = ""
    var storageToken = ""

    static func make(latency: LatencyProfile = .instant, throttle: ThrottleSettings = .off, faults: FaultSettings = .none,
                     pageSize: Int = 100, requiredSecret: String? = nil) async throws -> ServeFixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)")
        let clock = ManualClock(now: Date())
        let cloud = try LocalCloud(stateDirectory: directory, settings: LocalCloudSettings(latency: latency, throttle: .off, faults: faults), clock: clock)
        let tokenSettings = TokenAuthority.Settings(requiredClientSecret: requiredSecret)
        let tokens = TokenAuthority(key: try TokenAuthority.signingKey(stateDirectory: directory), settings: tokenSettings)
        let service = LocalServeService(cloud: cloud, settings: LocalServeSettings(pageSize: pageSize, throttle: throttle), tokens: tokens)
        var fixture = ServeFixture(service: service, directory: directory, clock: clock)
        fixture.token = try await fixture.getToken(scope: "https://management.azure.com/.default", secret: requiredSecret ?? "s")
        fixture.storageToken = try await fixture.getToken(scope: "https://storage.azure.com/.default", secret: requiredSecret ?? "s")
        return fixture
    }

    func getToken(scope: String, secret: String) async throws -> String {
        let response = await tokenResponse(["grant_type": "client_credentials", "client_id": "app", "client_secret": secret, "scope": scope])
        guard response.status == 200, let token = JSONValue.parse(response.body)?["access_token"]?.string else {
            throw CloudError(status: response.status, code: "TokenFailed", message: String(decoding: response.body, as: UTF8.self))
        }
        return token
    }

    func tokenResponse(_ form: [String: String]) async -> ServeResponse {
        let body = form.map { "\($0.key)=\(ServeFixture.encode($0.value))" }.joined(separator: "&")
        return await service.respond(ServeRequest(method: "POST", target: "/tenant/oauth2/v2.0/token",
                                                  headers: [("Content-Type", "application/x-www-form-urlencoded")], body: Data(body.utf8), scheme: "http"))
    }

    static func encode(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? s
    }

    /// An ARM request; `path` may hold a query (api-version is added when missing).
    func arm(_ method: String, _ path: String, _ body: JSONValue? = nil, token: String? = nil) async -> ServeResponse {
        var target = path
        if !target.contains("api-version=") { target += (target.contains("?") ? "&" : "?") + "api-version=2018-09-15" }
        var headers: [(name: String, value: String)] = [("Host", "127.0.0.1:1")]
        let bearer = token ?? self.token
        if !bearer.isEmpty { headers.append(("Authorization", "Bearer \(bearer)")) }
        return await service.respond(ServeRequest(method: method, target: target, headers: headers, body: body?.data ?? Data(), scheme: "http"))
    }

    /// A Blob request with the storage token.
    func blob(_ method: String, _ path: String, headers: [(name: String, value: String)] = [], body: Data = Data()) async -> ServeResponse {
        await service.respond(ServeRequest(method: method, target: path, headers: [("Host", "127.0.0.1:1"), ("x-ms-version", "2026-02-06"),
                                                                                   ("Authorization", "Bearer \(storageToken)")] + headers,
                                           body: body, scheme: "http"))
    }

    var labPath: String { "/subscriptions/\(sub)/resourceGroups/\(rg)/providers/Microsoft.DevTestLab/labs" }

    /// Creates a lab through ARM and returns its storage account name.
    @discardableResult
    func createLab(_ name: String) async throws -> String {
        let response = await arm("PUT", "\(labPath)/\(name)", ["location": "westeurope"])
        guard response.status == 201 || response.status == 200 else {
            throw CloudError(status: response.status, code: "LabFailed", message: String(decoding: response.body, as: UTF8.self))
        }
        let account = JSONValue.parse(response.body)?["properties"]?["defaultStorageAccount"]?.string ?? ""
        return String(account.split(separator: "/").last ?? "")
    }

    func json(_ response: ServeResponse) -> JSONValue { JSONValue.parse(response.body) ?? .null }

    func cleanup() { try? FileManager.default.removeItem(at: directory) }
}

/// Follows a Location / Azure-AsyncOperation URL (absolute, pointing at 127.0.0.1:1) in-process.
func pathOf(_ url: String) -> String {
    guard let range = url.range(of: "127.0.0.1:1") else { return url }
    return String(url[range.upperBound...])
}

@Suite struct AuthenticationTests {
    @Test func requestWithoutTokenIs401WithChallenge() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let response = await f.arm("GET", "/subscriptions/\(f.sub)/providers/Microsoft.DevTestLab/labs", token: "")
        #expect(response.status == 401)
        #expect(response.header("WWW-Authenticate")?.hasPrefix("Bearer authorization_uri=") == true)
        #expect(f.json(response)["error"]?["code"]?.string == "AuthenticationFailed")
    }

    @Test func forgedOrWrongAudienceTokensAre401() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let forged = f.token.dropLast(4) + "AAAA"
        #expect(f.json(await f.arm("GET", f.labPath, token: String(forged)))["error"]?["code"]?.string == "InvalidAuthenticationToken")
        // A storage token is not good for ARM.
        #expect(f.json(await f.arm("GET", f.labPath, token: f.storageToken))["error"]?["code"]?.string == "InvalidAuthenticationTokenAudience")
    }

    @Test func tokenEndpointChecksSecretsAndAssertions() async throws {
        let f = try await ServeFixture.make(requiredSecret: "right")
        defer { f.cleanup() }
        let wrong = await f.tokenResponse(["grant_type": "client_credentials", "client_id": "app", "client_secret": "wrong",
                                           "scope": "https://management.azure.com/.default"])
        #expect(wrong.status == 401)
        #expect(f.json(wrong)["error"]?.string == "invalid_client")
        func assertion(exp: Int) -> String {
            JWT.base64url(Data(#"{"alg":"RS256"}"#.utf8)) + "." + JWT.base64url((["exp": .number(Double(exp))] as JSONValue).data) + ".c2ln"
        }
        let now = Int(Date().timeIntervalSince1970)
        let expired = await f.tokenResponse(["grant_type": "client_credentials", "client_id": "app", "scope": "https://storage.azure.com/.default",
                                             "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                             "client_assertion": assertion(exp: now - 10)])
        #expect(expired.status == 401)
        // An unsigned assertion that names neither a certificate nor a trusted issuer is refused
        // (IdentityAndSignatureTests covers the assertions that are accepted).
        let unsigned = await f.tokenResponse(["grant_type": "client_credentials", "client_id": "app", "scope": "https://storage.azure.com/.default",
                                              "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                              "client_assertion": assertion(exp: now + 600)])
        #expect(unsigned.status == 401)
        #expect(f.json(unsigned)["error_codes"]?.array?.first?.int == 700211)
    }

    @Test func expiringTokensEarlyForcesANewToken() async throws {
        var f = try await ServeFixture.make()
        defer { f.cleanup() }
        #expect(await f.arm("GET", f.labPath).status == 200)
        #expect(await f.service.respond(ServeRequest(method: "POST", target: "/_imagefactory/expire-tokens", headers: [], body: Data(), scheme: "http")).status == 204)
        let expired = await f.arm("GET", f.labPath)
        #expect(expired.status == 401)
        #expect(f.json(expired)["error"]?["code"]?.string == "ExpiredAuthenticationToken")
        f.token = try await f.getToken(scope: "https://management.azure.com/.default", secret: "s")
        #expect(await f.arm("GET", f.labPath).status == 200)
    }
}

@Suite struct ARMTests {
    @Test func missingApiVersionIs400() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let response = await f.arm("GET", f.labPath + "?api-version=")
        #expect(response.status == 400)
        #expect(f.json(response)["error"]?["code"]?.string == "MissingApiVersionParameter")
    }

    @Test func unknownLabIs404WithArmErrorBody() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let response = await f.arm("GET", "\(f.labPath)/Nope")
        #expect(response.status == 404)
        #expect(f.json(response)["error"]?["code"]?.string == "ResourceNotFound")
        #expect(response.header("x-ms-request-id") != nil)
    }

    @Test func labVMCreateIsALongRunningOperationWithLocation() async throws {
        // Long enough that the VM is still creating when the test first looks, even on a loaded machine.
        var latency = LatencyProfile.instant
        latency.deployment = 4
        let f = try await ServeFixture.make(latency: latency)
        defer { f.cleanup() }
        try await f.createLab("Lab1")
        let body: JSONValue = ["location": "westeurope", "properties": [
            "galleryImageReference": ["offer": "o", "publisher": "p", "sku": "s", "osType": "Linux", "version": "latest"],
            "artifacts": [["artifactId": "/x/artifacts/linux-apt-package"]]]]
        let created = await f.arm("PUT", "\(f.labPath)/Lab1/virtualmachines/vm1", body)
        #expect(created.status == 201)
        #expect(f.json(created)["properties"]?["provisioningState"]?.string == "Creating")
        let retryAfter = try #require(created.header("Retry-After"))
        #expect(Int(retryAfter) != nil)
        let location = try #require(created.header("Location"))
        #expect(created.header("Azure-AsyncOperation") == nil)  // DevTest Labs declares Location only
        let first = await f.arm("GET", pathOf(location))
        #expect(first.status == 202)
        #expect(first.body.isEmpty)
        var done = first
        for _ in 0..<100 where done.status == 202 {
            f.clock.advance(by: Double(done.header("Retry-After") ?? "1") ?? 1)
            done = await f.arm("GET", pathOf(done.header("Location") ?? location))
        }
        #expect(done.status == 200)
        #expect(f.json(done)["properties"]?["provisioningState"]?.string == "Succeeded")
        let expanded = await f.arm("GET", "\(f.labPath)/Lab1/virtualmachines/vm1?$expand=properties($expand=artifacts)&api-version=2018-09-15")
        #expect(f.json(expanded)["properties"]?["artifacts"]?.array?.first?["status"]?.string == "Succeeded")
        let deleted = await f.arm("DELETE", "\(f.labPath)/Lab1/virtualmachines/vm1")
        #expect(deleted.status == 202)
        #expect(deleted.header("Location") != nil)
    }

    @Test func listsPageThroughNextLink() async throws {
        let f = try await ServeFixture.make(pageSize: 2)
        defer { f.cleanup() }
        try await f.createLab("Lab1")
        for i in 0..<4 {
            let r = await f.arm("PUT", "\(f.labPath)/Lab1/artifactsources/repo\(i)", ["properties": ["uri": "https://example.invalid/r.git", "sourceType": "GitHub"]])
            #expect(r.status == 201)
        }
        var names: [String] = []
        var pages = 0
        var next: String? = "\(f.labPath)/Lab1/artifactsources?api-version=2018-09-15"
        while let path = next {
            let page = f.json(await f.arm("GET", pathOf(path)))
            pages += 1
            names += page["value"]?.array?.compactMap { $0["name"]?.string } ?? []
            next = page["nextLink"]?.string
            #expect(pages < 10)
        }
        #expect(pages == 3)
        #expect(names.sorted() == ["public repo", "repo0", "repo1", "repo2", "repo3"])
    }

    @Test func writesAreThrottledPerSubscriptionWith429() async throws {
        var throttle = ThrottleSettings.azure
        throttle.capacity = 3
        throttle.refillPerSecond = 0.01
        let f = try await ServeFixture.make(throttle: throttle)
        defer { f.cleanup() }
        try await f.createLab("Lab1")  // one write
        let second = await f.arm("PUT", "\(f.labPath)/Lab1/artifactsources/a", ["properties": ["uri": "u", "sourceType": "GitHub"]])
        #expect(second.header("x-ms-ratelimit-remaining-subscription-writes") == "1")
        _ = await f.arm("PUT", "\(f.labPath)/Lab1/artifactsources/b", ["properties": ["uri": "u", "sourceType": "GitHub"]])
        let throttled = await f.arm("PUT", "\(f.labPath)/Lab1/artifactsources/c", ["properties": ["uri": "u", "sourceType": "GitHub"]])
        #expect(throttled.status == 429)
        #expect(Int(throttled.header("Retry-After") ?? "") ?? 0 >= 1)
        #expect(throttled.header("x-ms-ratelimit-remaining-subscription-writes") == "0")
        #expect(f.json(throttled)["error"]?["code"]?.string == "SubscriptionRequestsThrottled")
        // Reads are not writes, and another subscription has its own bucket.
        #expect(await f.arm("GET", "\(f.labPath)/Lab1").status == 200)
        let other = await f.arm("PUT", "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/rg/providers/Microsoft.DevTestLab/labs/L2", ["location": "westeurope"])
        #expect(other.status == 201)
    }

    @Test func injectedFaultsReachRequests() async throws {
        var faults = FaultSettings()
        var rates = FaultSettings.Rates()
        rates.transient = 1
        faults.rates[.read] = rates
        let f = try await ServeFixture.make(faults: faults)
        defer { f.cleanup() }
        let response = await f.arm("GET", f.labPath)
        #expect(response.status == 503)
        #expect(response.header("Retry-After") == "1")
        #expect(f.json(response)["error"]?["code"]?.string == "ServiceUnavailable")
    }

    @Test func galleryVersionReportsReplicationStatusWhenExpanded() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        #expect(await f.blob("PUT", "/\(account)/vhds?restype=container").status == 201)
        #expect(await f.blob("PUT", "/\(account)/vhds/a.vhd", headers: [("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", "1024")]).status == 201)
        #expect(await f.blob("PUT", "/\(account)/vhds/a.vhd?comp=page", headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=0-1023")],
                             body: Data(repeating: 1, count: 1024)).status == 201)
        let g = "/subscriptions/\(f.sub)/resourceGroups/\(f.rg)/providers/Microsoft.Compute/galleries/gal"
        let v = "api-version=2026-03-03"
        let gallery = await f.arm("PUT", "\(g)?\(v)", ["location": "westeurope"])
        #expect(gallery.status == 201)
        #expect(gallery.header("Azure-AsyncOperation") != nil)
        let status = f.json(await f.arm("GET", pathOf(gallery.header("Azure-AsyncOperation")!)))
        #expect(status["status"]?.string == "Succeeded")
        #expect(await f.arm("PUT", "\(g)/images/img?\(v)", ["location": "westeurope", "properties": [
            "osType": "Linux", "osState": "Generalized", "identifier": ["publisher": "p", "offer": "o", "sku": "s"]]]).status == 201)
        let version = await f.arm("PUT", "\(g)/images/img/versions/1.0.0?\(v)", ["location": "westeurope", "properties": [
            "publishingProfile": ["targetRegions": [["name": "West Europe"], ["name": "northeurope"]]],
            "storageProfile": ["osDiskImage": ["source": ["uri": .string("https://\(account).blob.core.windows.net/vhds/a.vhd")]]]]])
        #expect(version.status == 201)
        let plain = f.json(await f.arm("GET", "\(g)/images/img/versions/1.0.0?\(v)"))
        #expect(plain["properties"]?["replicationStatus"] == nil)
        let expanded = f.json(await f.arm("GET", "\(g)/images/img/versions/1.0.0?\(v)&$expand=ReplicationStatus"))
        #expect(expanded["properties"]?["replicationStatus"]?["aggregatedState"]?.string == "Completed")
        #expect(expanded["properties"]?["replicationStatus"]?["summary"]?.array?.count == 2)
    }

    @Test func storageAccountHasKeysAndBlobEndpoint() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        let path = "/subscriptions/\(f.sub)/resourceGroups/\(f.rg)/providers/Microsoft.Storage/storageAccounts/\(account)"
        let got = f.json(await f.arm("GET", "\(path)?api-version=2023-05-01"))
        #expect(got["properties"]?["primaryEndpoints"]?["blob"]?.string == "http://127.0.0.1:1/\(account)/")
        let keys = f.json(await f.arm("POST", "\(path)/listKeys?api-version=2023-05-01"))
        #expect(keys["keys"]?.array?.count == 2)
    }
}

@Suite struct BlobServiceTests {
    @Test("page blobs as Azure has them: Put Blob sizes them in whole pages with an empty body, Put Page writes whole pages in place, no Content-MD5 unless the client sets it")
    func pageBlobs() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        #expect(await f.blob("PUT", "/\(account)/vhds?restype=container").status == 201)
        let page = [("x-ms-blob-type", "PageBlob")]
        #expect(await f.blob("PUT", "/\(account)/vhds/odd.vhd", headers: page + [("x-ms-blob-content-length", "1000")]).status == 400)
        #expect(await f.blob("PUT", "/\(account)/vhds/nosize.vhd", headers: page).status == 400)
        #expect(await f.blob("PUT", "/\(account)/vhds/body.vhd", headers: page + [("x-ms-blob-content-length", "512")], body: Data(count: 512)).status == 400)
        #expect(await f.blob("PUT", "/\(account)/vhds/d.vhd", headers: page + [("x-ms-blob-content-length", "2048")]).status == 201)
        let written = Data(repeating: 5, count: 512)
        #expect(await f.blob("PUT", "/\(account)/vhds/d.vhd?comp=page", headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=1024-1535")], body: written).status == 201)
        // Not on page boundaries, past the end, a body that is not the range, a block blob: refused.
        #expect(await f.blob("PUT", "/\(account)/vhds/d.vhd?comp=page", headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=100-611")], body: written).status == 416)
        #expect(await f.blob("PUT", "/\(account)/vhds/d.vhd?comp=page", headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=2048-2559")], body: written).status == 416)
        #expect(await f.blob("PUT", "/\(account)/vhds/d.vhd?comp=page", headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=0-1023")], body: written).status == 400)
        #expect(await f.blob("PUT", "/\(account)/vhds/b.txt", headers: [("x-ms-blob-type", "BlockBlob")], body: Data("x".utf8)).status == 201)
        #expect(await f.blob("PUT", "/\(account)/vhds/b.txt?comp=page", headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=0-511")], body: written).status == 409)
        let head = await f.blob("HEAD", "/\(account)/vhds/d.vhd")
        #expect(head.header("x-ms-blob-type") == "PageBlob")
        #expect(head.header("Content-Length") == "2048")
        #expect(head.header("Content-MD5") == nil, "Azure computes no MD5 for a page blob")
        let got = await f.blob("GET", "/\(account)/vhds/d.vhd")
        #expect(got.body == Data(count: 1024) + written + Data(count: 512))
        // Cleared pages read as zeros again.
        #expect(await f.blob("PUT", "/\(account)/vhds/d.vhd?comp=page", headers: [("x-ms-page-write", "clear"), ("x-ms-range", "bytes=1024-1535")]).status == 201)
        #expect(await f.blob("GET", "/\(account)/vhds/d.vhd").body == Data(count: 2048))
        // The MD5 a client sets is the one kept.
        #expect(await f.blob("PUT", "/\(account)/vhds/m.vhd", headers: page + [("x-ms-blob-content-length", "512"), ("x-ms-blob-content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")]).status == 201)
        #expect(await f.blob("HEAD", "/\(account)/vhds/m.vhd").header("Content-MD5") == "AAAAAAAAAAAAAAAAAAAAAA==")
        let list = String(decoding: await f.blob("GET", "/\(account)/vhds?restype=container&comp=list").body, as: UTF8.self)
        #expect(list.contains("<Name>d.vhd</Name>") && list.contains("<BlobType>PageBlob</BlobType>") && list.contains("<BlobType>BlockBlob</BlobType>"))
    }

    @Test func putGetPropertiesListDelete() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        #expect(await f.blob("PUT", "/\(account)/c01?restype=container").status == 201)
        #expect(await f.blob("PUT", "/\(account)/c01?restype=container").header("x-ms-error-code") == "ContainerAlreadyExists")
        let data = Data("hello blob".utf8)
        let put = await f.blob("PUT", "/\(account)/c01/dir/a%20b.txt", headers: [("x-ms-blob-type", "BlockBlob"), ("x-ms-meta-owner", "me")], body: data)
        #expect(put.status == 201)
        #expect(put.header("Content-MD5") != nil)
        let head = await f.blob("HEAD", "/\(account)/c01/dir/a%20b.txt")
        #expect(head.header("Content-Length") == "10")
        #expect(head.header("x-ms-meta-owner") == "me")
        #expect(head.header("x-ms-lease-state") == "available")
        let range = await f.blob("GET", "/\(account)/c01/dir/a%20b.txt", headers: [("x-ms-range", "bytes=0-4")])
        #expect(range.status == 206)
        #expect(range.header("Content-Range") == "bytes 0-4/10")
        #expect(range.body == Data("hello".utf8))
        let list = String(decoding: (await f.blob("GET", "/\(account)/c01?restype=container&comp=list")).body, as: UTF8.self)
        #expect(list.contains("<Name>dir/a b.txt</Name>"))
        #expect(await f.blob("DELETE", "/\(account)/c01/dir/a%20b.txt").status == 202)
        let missing = await f.blob("HEAD", "/\(account)/c01/dir/a%20b.txt")
        #expect(missing.status == 404)
        #expect(missing.header("x-ms-error-code") == "BlobNotFound")
    }

    @Test func copyCanBePolledAndAborted() async throws {
        var slow = LatencyProfile.instant
        slow.copyBase = 30  // a copy that stays pending while the test looks at it
        let f = try await ServeFixture.make(latency: slow)
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        _ = await f.blob("PUT", "/\(account)/c01?restype=container")
        _ = await f.blob("PUT", "/\(account)/c01/src", headers: [("x-ms-blob-type", "BlockBlob")], body: Data(repeating: 7, count: 4096))
        let copy = await f.blob("PUT", "/\(account)/c01/dst", headers: [("x-ms-copy-source", "http://127.0.0.1:1/\(account)/c01/src")])
        #expect(copy.status == 202)
        #expect(copy.header("x-ms-copy-status") == "pending")
        let copyID = try #require(copy.header("x-ms-copy-id"))
        let pending = await f.blob("HEAD", "/\(account)/c01/dst")
        #expect(pending.header("x-ms-copy-status") == "pending")
        #expect(pending.header("x-ms-copy-id") == copyID)
        #expect(pending.header("x-ms-copy-progress")?.hasSuffix("/4096") == true)
        let wrongID = await f.blob("PUT", "/\(account)/c01/dst?comp=copy&copyid=00000000-0000-0000-0000-000000000000", headers: [("x-ms-copy-action", "abort")])
        #expect(wrongID.status == 409)
        let abort = await f.blob("PUT", "/\(account)/c01/dst?comp=copy&copyid=\(copyID)", headers: [("x-ms-copy-action", "abort")])
        #expect(abort.status == 204)
        #expect(await f.blob("HEAD", "/\(account)/c01/dst").header("x-ms-copy-status") == "aborted")
    }

    @Test func leaseAcquireConflictBreak() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        _ = await f.blob("PUT", "/\(account)/c01?restype=container")
        _ = await f.blob("PUT", "/\(account)/c01/lock", headers: [("x-ms-blob-type", "BlockBlob")])
        let lease = await f.blob("PUT", "/\(account)/c01/lock?comp=lease", headers: [("x-ms-lease-action", "acquire"), ("x-ms-lease-duration", "60")])
        #expect(lease.status == 201)
        #expect(lease.header("x-ms-lease-id") != nil)
        let second = await f.blob("PUT", "/\(account)/c01/lock?comp=lease", headers: [("x-ms-lease-action", "acquire"), ("x-ms-lease-duration", "60")])
        #expect(second.status == 409)
        #expect(second.header("x-ms-error-code") == "LeaseAlreadyPresent")
        let broken = await f.blob("PUT", "/\(account)/c01/lock?comp=lease", headers: [("x-ms-lease-action", "break"), ("x-ms-lease-break-period", "0")])
        #expect(broken.status == 202)
        #expect(broken.header("x-ms-lease-time") == "0")
        #expect(await f.blob("PUT", "/\(account)/c01/lock?comp=lease", headers: [("x-ms-lease-action", "acquire"), ("x-ms-lease-duration", "15")]).status == 201)
    }

    @Test func blobRequestWithoutTokenIs401() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        let response = await f.service.respond(ServeRequest(method: "GET", target: "/\(account)?comp=list", headers: [("x-ms-version", "2026-02-06")], body: Data(), scheme: "http"))
        #expect(response.status == 401)
        #expect(response.header("x-ms-error-code") == "NoAuthenticationInformation")
    }
}

@Suite struct ListenerTests {
    /// The whole HTTP path: a real socket on an ephemeral loopback port, URLSession as the client.
    @Test func servesOverLoopbackHTTP() async throws {
        let f = try await ServeFixture.make()
        defer { f.cleanup() }
        let account = try await f.createLab("Lab1")
        _ = await f.blob("PUT", "/\(account)/c01?restype=container")
        _ = await f.blob("PUT", "/\(account)/c01/b", headers: [("x-ms-blob-type", "BlockBlob")], body: Data(repeating: 3, count: 12345))
        let ports = AsyncStream<Int>.makeStream()
        let server = LocalServer(service: f.service, port: 0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run(onListening: { ports.continuation.yield($0) }) }
            var iterator = ports.stream.makeAsyncIterator()
            let port = try #require(await iterator.next())
            let session = URLSession(configuration: .ephemeral)
            var labs = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/subscriptions/\(f.sub)/providers/Microsoft.DevTestLab/labs?api-version=2018-09-15")!)
            labs.setValue("Bearer \(f.token)", forHTTPHeaderField: "Authorization")
            let (body, response) = try await session.data(for: labs)
            #expect((response as? HTTPURLResponse)?.statusCode == 200)
            #expect(JSONValue.parse(body)?["value"]?.array?.count == 1)
            var head = URLRequest(url: URL(string: "http://127.0.0.1:\(port)/\(account)/c01/b")!)
            head.httpMethod = "HEAD"
            head.setValue("Bearer \(f.storageToken)", forHTTPHeaderField: "Authorization")
            head.setValue("2026-02-06", forHTTPHeaderField: "x-ms-version")
            let (_, headResponse) = try await session.data(for: head)
            #expect((headResponse as? HTTPURLResponse)?.value(forHTTPHeaderField: "Content-Length") == "12345")
            let (_, unauthorized) = try await session.data(from: URL(string: "http://127.0.0.1:\(port)/subscriptions/\(f.sub)/providers/Microsoft.DevTestLab/labs?api-version=2018-09-15")!)
            #expect((unauthorized as? HTTPURLResponse)?.statusCode == 401)
            group.cancelAll()
        }
    }

    @Test func selfSignedCertificateIsMadeOnceAndReused() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cert-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try SelfSignedCertificate.ensure(in: directory)
        #expect(first.created)
        let pem = try String(contentsOfFile: first.certificatePath, encoding: .utf8)
        #expect(pem.hasPrefix("-----BEGIN CERTIFICATE-----"))
        let second = try SelfSignedCertificate.ensure(in: directory)
        #expect(!second.created)
        #expect(second.certificatePath == first.certificatePath)
    }
}
