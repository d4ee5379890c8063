@testable import AzureBackend
import FactoryModel
import Foundation
import Testing

/// A transport that answers from a script and records what it was sent.
actor ScriptedTransport: HTTPTransport {
    typealias Answer = @Sendable (HTTPRequestData, Int) -> Result<HTTPResponseData, TransportError>
    private let answer: Answer
    private(set) var requests: [HTTPRequestData] = []

    init(_ answer: @escaping Answer) { self.answer = answer }

    func send(_ request: HTTPRequestData, timeout: Double) async throws -> HTTPResponseData {
        requests.append(request)
        return try answer(request, requests.count).get()
    }
}

/// A credential that counts its sign-ins and hands out numbered tokens.
actor CountingCredential: TokenCredential {
    nonisolated var mode: AuthMode { .clientSecret }
    nonisolated var identity: String { "test app" }
    private(set) var count = 0
    let lifetime: Double
    init(lifetime: Double = 3600) { self.lifetime = lifetime }
    func getToken(scope: String) async throws -> AccessToken {
        count += 1
        return AccessToken(token: "token-\(count)", expiresOn: Date().addingTimeInterval(lifetime))
    }
}

func client(_ transport: any HTTPTransport, credential: any TokenCredential = CountingCredential(), clock: any FactoryClock = ManualClock(now: Date()),
            maxWrites: Int = 20, attempts: Int = 6) -> AzureHTTPClient {
    let profile = AzureCloudProfile.named(.azureCloud)
    return AzureHTTPClient(profile: profile, transport: transport, credential: credential, clock: clock, maxConcurrentWrites: maxWrites,
                           correlationID: "corr-1", policy: .init(maxAttempts: attempts, baseDelay: 1, maxDelay: 8, requestTimeout: 30),
                           random: { 0.5 })
}

let armURL = URL(string: "https://management.azure.com/subscriptions/s1/providers/Microsoft.DevTestLab/labs?api-version=2018-09-15")!

@Suite("Azure HTTP client")
struct AzureHTTPClientTests {
    @Test("every request carries the user agent, a client request id, the run's correlation id and a bearer token")
    func identifiesItself() async throws {
        let transport = ScriptedTransport { _, _ in .success(HTTPResponseData(status: 200, body: Data("{}".utf8))) }
        let http = client(transport)
        _ = try await http.send(AzureRequest(method: "GET", url: armURL, auth: .management, subscription: "s1"))
        _ = try await http.send(AzureRequest(method: "GET", url: armURL, auth: .management, subscription: "s1"))
        let sent = await transport.requests
        #expect(sent.count == 2)
        #expect(sent.allSatisfy { $0.header("User-Agent") == "imagefactory/\(AzureHTTPClient.version)" })
        #expect(sent.allSatisfy { $0.header("x-ms-correlation-request-id") == "corr-1" })
        #expect(Set(sent.compactMap { $0.header("x-ms-client-request-id") }).count == 2)
        #expect(sent.allSatisfy { $0.header("Authorization") == "Bearer token-1" })
    }

    @Test("a 401 signs in again once; a second 401 is the caller's error")
    func refreshesOnceOn401() async throws {
        let credential = CountingCredential()
        let transport = ScriptedTransport { request, n in
            n == 1 ? .success(HTTPResponseData(status: 401, body: Data(#"{"error":{"code":"ExpiredAuthenticationToken","message":"expired"}}"#.utf8)))
                   : .success(HTTPResponseData(status: 200, body: Data("{}".utf8)))
        }
        let http = client(transport, credential: credential)
        _ = try await http.send(AzureRequest(method: "GET", url: armURL, auth: .management, subscription: "s1"))
        #expect(await credential.count == 2)
        let sent = await transport.requests
        #expect(sent.map { $0.header("Authorization") } == ["Bearer token-1", "Bearer token-2"])

        let always401 = ScriptedTransport { _, _ in .success(HTTPResponseData(status: 401, body: Data(#"{"error":{"code":"InvalidAuthenticationToken","message":"no"}}"#.utf8))) }
        await #expect(throws: CloudError.self) {
            _ = try await client(always401).send(AzureRequest(method: "GET", url: armURL, auth: .management, subscription: "s1"))
        }
        #expect(await always401.requests.count == 2)
    }

    @Test("503 and connection failures are retried with back-off on the injected clock, honouring Retry-After")
    func retriesTransientFailures() async throws {
        let clock = ManualClock(now: Date())
        let transport = ScriptedTransport { _, n in
            switch n {
            case 1: return .failure(TransportError("connection reset"))
            case 2: return .success(HTTPResponseData(status: 503, headers: [("Retry-After", "7")], body: Data(#"{"error":{"code":"ServiceUnavailable","message":"busy"}}"#.utf8)))
            default: return .success(HTTPResponseData(status: 200, body: Data("{}".utf8)))
            }
        }
        let http = client(transport, clock: clock)
        let task = Task { try await http.send(AzureRequest(method: "GET", url: armURL, auth: .management, subscription: "s1")) }
        // First wait: back-off for attempt 1 (1 s full, equal jitter at 0.5 -> 0.75 s).
        while clock.sleeperCount == 0 { await Task.yield() }
        clock.advance(by: 0.75)
        while await transport.requests.count < 2 { await Task.yield() }
        while clock.sleeperCount == 0 { await Task.yield() }
        clock.advance(by: 6.9)
        #expect(await transport.requests.count == 2, "Retry-After 7 s is honoured")
        clock.advance(by: 0.2)
        let response = try await task.value
        #expect(response.status == 200)
        #expect(await http.statistics().retries == 2)
    }

    @Test("errors carry the service's code, message, target and request id, and never a secret")
    func errorsAreReadableAndRedacted() async throws {
        let body = #"{"error":{"code":"InvalidParameter","message":"Bad uri https://a.blob.core.windows.net/c/b.vhd?sv=1&sig=SECRETSIG and Bearer eyJabc.def.ghi","target":"properties.vhd"}}"#
        let transport = ScriptedTransport { _, _ in .success(HTTPResponseData(status: 400, headers: [("x-ms-request-id", "req-9")], body: Data(body.utf8))) }
        do {
            _ = try await client(transport).send(AzureRequest(method: "PUT", url: armURL, auth: .management, subscription: "s1"))
            Issue.record("expected an error")
        } catch let error as CloudError {
            #expect(error.status == 400 && error.code == "InvalidParameter")
            #expect(error.message.contains("[target: properties.vhd]"))
            #expect(error.message.contains("x-ms-request-id req-9"))
            #expect(!error.message.contains("SECRETSIG"))
            #expect(!error.message.contains("eyJabc"))
        }
        let xml = "<?xml version=\"1.0\"?><Error><Code>BlobNotFound</Code><Message>The specified blob does not exist.\nRequestId:1</Message></Error>"
        let blob = ScriptedTransport { _, _ in .success(HTTPResponseData(status: 404, headers: [("x-ms-error-code", "BlobNotFound")], body: Data(xml.utf8))) }
        await #expect(throws: CloudError(status: 404, code: "BlobNotFound", message: "The specified blob does not exist.")) {
            _ = try await client(blob).send(AzureRequest(method: "GET", url: URL(string: "https://a.blob.core.windows.net/c/b")!, auth: .storage))
        }
    }

    @Test("a 429 halves the subscription's write window and pauses its other writes; successes widen it again")
    func adaptiveLimiter() async throws {
        let clock = ManualClock(now: Date())
        let limiter = SubscriptionLimiter(maximum: 8, clock: clock)
        try await limiter.acquireWrite("S1")
        await limiter.releaseWrite("s1", throttledFor: 10, remaining: nil)
        #expect(await limiter.snapshot("s1") == .init(window: 4, lowestWindow: 4, throttles: 1))
        // A write now waits for the pause to end.
        let waiting = Task { try await limiter.acquireWrite("s1") }
        while clock.sleeperCount == 0 { await Task.yield() }
        clock.advance(by: 9)
        #expect(clock.sleeperCount == 1, "still paused after 9 of 10 seconds")
        clock.advance(by: 1.5)
        try await waiting.value
        // ARM says the bucket is empty: the next write waits a probe interval instead of drawing a 429.
        await limiter.releaseWrite("s1", throttledFor: nil, remaining: 0)
        let paced = Task { try await limiter.acquireWrite("s1") }
        while clock.sleeperCount == 0 { await Task.yield() }
        clock.advance(by: SubscriptionLimiter.probeInterval)
        try await paced.value
        await limiter.releaseWrite("s1", throttledFor: nil, remaining: 3)
        // Three left: three writes may go, the fourth waits for one of them to report.
        for _ in 0..<3 { try await limiter.acquireWrite("s1") }
        let fourth = Task { try await limiter.acquireWrite("s1") }
        for _ in 0..<50 { await Task.yield() }
        await limiter.releaseWrite("s1", throttledFor: nil, remaining: 40)
        try await fourth.value
        for _ in 0..<3 { await limiter.releaseWrite("s1", throttledFor: nil, remaining: 40) }
        for _ in 0..<40 {
            try await limiter.acquireWrite("s1")
            await limiter.releaseWrite("s1", throttledFor: nil, remaining: 500)
        }
        #expect(await limiter.snapshot("s1").window == 8, "the window grows back, never above the maximum")
        #expect(await limiter.snapshot("other").throttles == 0, "subscriptions are separate")
    }

    @Test("the write window is a real limit: no more writes in flight than it allows")
    func windowLimitsConcurrency() async throws {
        let clock = ManualClock(now: Date())
        let limiter = SubscriptionLimiter(maximum: 3, clock: clock)
        let peak = Peak()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<12 {
                group.addTask {
                    try await limiter.acquireWrite("s")
                    await peak.enter()
                    await Task.yield()
                    await peak.leave()
                    await limiter.releaseWrite("s", throttledFor: nil, remaining: nil)
                }
            }
            try await group.waitForAll()
        }
        #expect(await peak.max == 3, "the limit was reached and never exceeded")
    }

    @Test("Shared Key signs the canonical request as the Blob service specifies")
    func sharedKeyStringToSign() throws {
        let url = URL(string: "https://myaccount.blob.core.windows.net/mycontainer/a%20b.vhd?comp=lease&restype=blob")!
        let request = HTTPRequestData(method: "PUT", url: url, headers: [
            ("x-ms-version", "2025-11-05"), ("x-ms-date", "Wed, 02 Dec 2026 12:00:00 GMT"), ("x-ms-lease-action", "acquire"),
            ("Content-Type", "application/octet-stream"),
        ], body: Data("hello".utf8))
        let text = SharedKeySigner.stringToSign(request, account: "myaccount")
        #expect(text == "PUT\n\n\n5\n\napplication/octet-stream\n\n\n\n\n\n\nx-ms-date:Wed, 02 Dec 2026 12:00:00 GMT\nx-ms-lease-action:acquire\nx-ms-version:2025-11-05\n/myaccount/mycontainer/a%20b.vhd\ncomp:lease\nrestype:blob")
        let key = Data("key".utf8)
        #expect(SharedKeySigner.authorization(request, account: "myaccount", key: key).hasPrefix("SharedKey myaccount:"))
    }

    @Test("plain http is refused for anything but loopback; clouds set their own endpoints and scopes")
    func cloudProfiles() throws {
        #expect(throws: FactoryError.self) { try AzureCloudProfile.resolve(cloud: nil, armEndpoint: "http://arm.contoso.com", environment: [:]) }
        let local = try AzureCloudProfile.resolve(cloud: nil, armEndpoint: "http://127.0.0.1:8443/", environment: [:])
        #expect(local.armEndpoint.absoluteString == "http://127.0.0.1:8443")
        let china = try AzureCloudProfile.resolve(cloud: "azurechinacloud", armEndpoint: nil, environment: [:])
        #expect(china.armEndpoint.host == "management.chinacloudapi.cn" && china.managementScope == "https://management.chinacloudapi.cn/.default")
        let gov = try AzureCloudProfile.resolve(cloud: nil, armEndpoint: nil, environment: ["IMAGEFACTORY_CLOUD": "AzureUSGovernment", "AZURE_AUTHORITY_HOST": "https://login.example.us"])
        #expect(gov.authorityHost.host == "login.example.us")
        #expect(throws: FactoryError.self) { try AzureCloudProfile.resolve(cloud: "Mars", armEndpoint: nil, environment: [:]) }
    }
}

actor Peak {
    private var current = 0
    private(set) var max = 0
    func enter() { current += 1; max = Swift.max(max, current) }
    func leave() { current -= 1 }
}

@Suite("Azure backend operations")
struct AzureOperationTests {
    @Test("a Location that answers 200 with a status (DevTest Labs' Operations_Get) is polled by that status")
    func locationWithStatus() async throws {
        let transport = ScriptedTransport { _, n in
            switch n {
            case 1: return .success(HTTPResponseData(status: 200, body: Data(#"{"status": "Running"}"#.utf8)))
            case 2: return .success(HTTPResponseData(status: 200, body: Data(#"{"status": "Failed", "error": {"code": "ImageCreationFailed", "message": "The VHD is not a valid disk."}}"#.utf8)))
            default: return .success(HTTPResponseData(status: 200, body: Data(#"{"id": "/x", "name": "x"}"#.utf8)))
            }
        }
        let backend = AzureBackend(http: client(transport))
        let handle = OperationHandle(id: "location https://management.azure.com/subscriptions/s1/providers/Microsoft.DevTestLab/locations/westeurope/operations/1?api-version=2018-09-15", retryAfter: 0)
        guard case .inProgress = try await backend.pollOperation(handle) else { Issue.record("Running is in progress"); return }
        guard case .failed(let error) = try await backend.pollOperation(handle) else { Issue.record("Failed is failed"); return }
        #expect(error.code == "ImageCreationFailed")
        #expect(try await backend.pollOperation(handle) == .succeeded, "a resource body (the final GET) is success")
    }

    @Test("a write waiting for a slot gives up when its task is cancelled, and the slot it never took is not lost")
    func cancelledWaiter() async throws {
        let limiter = SubscriptionLimiter(maximum: 1, clock: ManualClock(now: Date()))
        try await limiter.acquireWrite("s")
        let waiting = Task { try await limiter.acquireWrite("s") }
        for _ in 0..<100 { await Task.yield() }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
        await limiter.releaseWrite("s", throttledFor: nil, remaining: nil)
        try await limiter.acquireWrite("s")  // the one slot is free again
        await limiter.releaseWrite("s", throttledFor: nil, remaining: nil)
    }
}
