import FactoryModel
import Foundation
import Logging

/// How a request proves who sends it.
public enum RequestAuth: Sendable {
    /// An Entra token for ARM.
    case management
    /// An Entra token for Blob storage.
    case storage
    /// Blob storage's Shared Key, with the account's key (`--storage-auth key`).
    case sharedKey(account: String, key: Data)
    /// Nothing: the URL carries its own credential (a SAS).
    case none
}

/// A request before policy: what the backend wants to say.
struct AzureRequest: Sendable {
    var method: String
    var url: URL
    var headers: [(name: String, value: String)] = []
    var body: Data?
    var auth: RequestAuth
    /// The subscription an ARM request counts against (throttling is per subscription).
    var subscription: String?
}

/// The Azure backend's one HTTP client. Every request goes through it, and it owns what Azure
/// expects of a well-behaved client:
/// - authentication (Entra tokens per scope from the `TokenCache`, refreshed once more on a 401;
///   or Shared Key signing), `x-ms-version` and `x-ms-date` for Blob;
/// - identification: `x-ms-client-request-id` per request, one `x-ms-correlation-request-id` per
///   run (in the logs and the run report), `User-Agent: imagefactory/<version>`;
/// - retries of 408, 429, 5xx and connection failures, with exponential back-off and jitter,
///   honouring `Retry-After` / `x-ms-retry-after-ms`, and a time-out per request;
/// - the per-subscription adaptive write limit (`SubscriptionLimiter`);
/// - errors as `CloudError` with the service's code, message, target and request id, and never
///   a secret in them.
public final class AzureHTTPClient: Sendable {
    public static let version = "0.1.0"
    public static let userAgent = "imagefactory/\(version)"
    /// The Blob service version every data-plane request pins.
    public static let storageVersion = "2025-11-05"

    public struct Policy: Sendable {
        public var maxAttempts: Int
        public var baseDelay: Double
        public var maxDelay: Double
        public var requestTimeout: Double
        public init(maxAttempts: Int = 8, baseDelay: Double = 0.8, maxDelay: Double = 60, requestTimeout: Double = 300) {
            self.maxAttempts = max(1, maxAttempts)
            self.baseDelay = baseDelay
            self.maxDelay = maxDelay
            self.requestTimeout = requestTimeout
        }
    }

    public let profile: AzureCloudProfile
    public let transport: any HTTPTransport
    public let tokens: TokenCache
    public let limiter: SubscriptionLimiter
    public let clock: any FactoryClock
    public let correlationID: String
    public let policy: Policy
    let logger: Logger
    let random: @Sendable () -> Double
    let counters = RequestCounters()

    public init(profile: AzureCloudProfile, transport: any HTTPTransport, credential: any TokenCredential, clock: any FactoryClock,
                maxConcurrentWrites: Int, correlationID: String = UUID().uuidString.lowercased(), policy: Policy = Policy(),
                logger: Logger = Logger(label: "imagefactory.azure"), random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        self.profile = profile
        self.transport = transport
        self.tokens = TokenCache(credential: credential, clock: clock)
        self.limiter = SubscriptionLimiter(maximum: maxConcurrentWrites, clock: clock)
        self.clock = clock
        self.correlationID = correlationID
        self.policy = policy
        self.logger = logger
        self.random = random
    }

    /// Requests sent, retried and throttled so far (the run report and benchmarks read them).
    public func statistics() async -> RequestCounters.Snapshot { await counters.snapshot() }

    /// Sends a request with every policy applied; a 2xx (or 3xx) answer is returned, anything else thrown as `CloudError`.
    func send(_ request: AzureRequest) async throws -> HTTPResponseData {
        var attempt = 0
        var refreshedAfter401 = false
        let isWrite = !["GET", "HEAD"].contains(request.method)
        let limited = isWrite && request.subscription != nil && isARM(request)
        while true {
            attempt += 1
            try Task.checkCancellation()
            var wire = HTTPRequestData(method: request.method, url: request.url, headers: request.headers, body: request.body)
            wire.setHeader("User-Agent", Self.userAgent)
            wire.setHeader("x-ms-client-request-id", UUID().uuidString.lowercased())
            if isARM(request) {
                wire.setHeader("x-ms-correlation-request-id", correlationID)
                if wire.header("Accept") == nil { wire.setHeader("Accept", "application/json") }
            }
            var bearer: (scope: String, token: String)?
            do {
                bearer = try await authorize(&wire, request.auth)
            } catch let error as AuthenticationError {
                // A refusal is exit 3; a token service that was only unavailable is worth another try later.
                throw CloudError(status: error.transient ? 503 : 401, code: error.transient ? "SignInUnavailable" : "AuthenticationFailed",
                                 message: error.message + (error.hint.map { " \($0)" } ?? ""))
            }
            if limited, let subscription = request.subscription {
                try await limiter.acquireWrite(subscription)
            } else if let subscription = request.subscription {
                try await limiter.waitOutPause(subscription)
            }
            await counters.sent(arm: isARM(request), write: isWrite)
            let response: HTTPResponseData
            do {
                response = try await transport.send(wire, timeout: policy.requestTimeout)
            } catch let error as TransportError {
                if limited, let subscription = request.subscription { await limiter.releaseWrite(subscription, throttledFor: nil, remaining: nil) }
                guard attempt < policy.maxAttempts else {
                    throw CloudError(status: 503, code: "BackendUnreachable", message: "\(error.message) (after \(attempt) tries)")
                }
                await counters.retried()
                logger.debug("retrying after a transport error", metadata: ["error": "\(error.message)", "attempt": "\(attempt)"])
                try await clock.sleep(seconds: backoff(attempt))
                continue
            } catch {
                // Cancellation or anything else: the write's slot is given back before the error goes up.
                if limited, let subscription = request.subscription { await limiter.releaseWrite(subscription, throttledFor: nil, remaining: nil) }
                throw error
            }
            let remaining = response.header("x-ms-ratelimit-remaining-subscription-writes").flatMap(Int.init)
            let status = response.status
            let transient = status == 408 || status == 429 || status >= 500
            let retryAfter = Self.retryAfter(response)
            if limited, let subscription = request.subscription {
                await limiter.releaseWrite(subscription, throttledFor: status == 429 ? (retryAfter ?? backoff(attempt)) : nil, remaining: remaining)
            } else if status == 429, let subscription = request.subscription {
                await limiter.readThrottled(subscription, for: retryAfter ?? backoff(attempt))
            }
            if status < 400 { return response }
            if status == 401, let bearer, !refreshedAfter401 {
                // The token expired early or was revoked: sign in again, once.
                refreshedAfter401 = true
                await tokens.invalidate(scope: bearer.scope, token: bearer.token)
                continue
            }
            let error = Self.cloudError(response, request: wire, retryAfter: retryAfter)
            if transient && attempt < policy.maxAttempts {
                await counters.retried(throttled: status == 429)
                logger.debug("retrying", metadata: ["status": "\(status)", "code": "\(error.code)", "attempt": "\(attempt)"])
                // A throttled ARM write waits in the limiter (the subscription is paused); anything else sleeps here.
                if !(status == 429 && request.subscription != nil) { try await clock.sleep(seconds: retryAfter ?? backoff(attempt)) }
                continue
            }
            throw error
        }
    }

    private func isARM(_ request: AzureRequest) -> Bool {
        if case .management = request.auth { return true }
        return false
    }

    /// Adds the request's credential; returns the bearer token used, so a 401 can invalidate exactly it.
    private func authorize(_ wire: inout HTTPRequestData, _ auth: RequestAuth) async throws -> (scope: String, token: String)? {
        switch auth {
        case .management:
            let token = try await tokens.token(scope: profile.managementScope)
            wire.setHeader("Authorization", "Bearer \(token)")
            return (profile.managementScope, token)
        case .storage:
            Self.storageHeaders(&wire, now: clock.now())
            let token = try await tokens.token(scope: profile.storageScope)
            wire.setHeader("Authorization", "Bearer \(token)")
            return (profile.storageScope, token)
        case .sharedKey(let account, let key):
            Self.storageHeaders(&wire, now: clock.now())
            wire.setHeader("Authorization", SharedKeySigner.authorization(wire, account: account, key: key))
            return nil
        case .none:
            Self.storageHeaders(&wire, now: clock.now())
            return nil
        }
    }

    static func storageHeaders(_ wire: inout HTTPRequestData, now: Date) {
        wire.setHeader("x-ms-version", storageVersion)
        wire.setHeader("x-ms-date", HTTPDates.rfc1123(now))
    }

    /// Exponential back-off with equal jitter: half fixed, half random, so jobs do not retry in lockstep.
    func backoff(_ attempt: Int) -> Double {
        let full = min(policy.maxDelay, policy.baseDelay * pow(2, Double(attempt - 1)))
        return full / 2 + random() * full / 2
    }

    /// `x-ms-retry-after-ms`, `retry-after-ms`, or `Retry-After` in seconds or as an HTTP date.
    static func retryAfter(_ response: HTTPResponseData) -> Double? {
        for name in ["x-ms-retry-after-ms", "retry-after-ms"] {
            if let ms = response.header(name).flatMap(Double.init) { return ms / 1000 }
        }
        guard let text = response.header("Retry-After") else { return nil }
        if let seconds = Double(text.trimmingCharacters(in: .whitespaces)) { return max(0, seconds) }
        if let date = HTTPDates.parse(text) { return max(0, date.timeIntervalSinceNow) }
        return nil
    }

    /// The service's error: ARM's `{"error": {code, message, target}}`, Blob's `x-ms-error-code` and
    /// XML `<Message>`, with the request id; secrets masked.
    static func cloudError(_ response: HTTPResponseData, request: HTTPRequestData, retryAfter: Double?) -> CloudError {
        var code = response.header("x-ms-error-code") ?? ""
        var message = ""
        var target: String?
        if let json = (try? JSONSerialization.jsonObject(with: response.body)) as? [String: Any] {
            let error = json["error"] as? [String: Any] ?? json
            if let c = error["code"] as? String { code = c }
            message = error["message"] as? String ?? ""
            target = error["target"] as? String
            if let details = error["details"] as? [[String: Any]], !details.isEmpty {
                let texts = details.compactMap { d -> String? in
                    guard let m = d["message"] as? String else { return nil }
                    return (d["code"] as? String).map { "\($0): \(m)" } ?? m
                }
                if !texts.isEmpty { message += " (" + texts.joined(separator: "; ") + ")" }
            }
        } else if let xml = String(data: response.body, encoding: .utf8), !xml.isEmpty {
            if code.isEmpty, let c = XMLText.first("Code", in: xml) { code = c }
            message = (XMLText.first("Message", in: xml) ?? "").components(separatedBy: "\n").first ?? ""
        }
        if code.isEmpty { code = HTTPStatusNames.name(response.status) }
        if message.isEmpty { message = "\(request.method) \(request.url.path) answered \(response.status)." }
        if let target, !target.isEmpty { message += " [target: \(target)]" }
        if let id = response.header("x-ms-request-id") { message += " (x-ms-request-id \(id))" }
        return CloudError(status: response.status, code: code, message: Redaction.text(message), retryAfter: retryAfter)
    }
}

/// How many requests a run sent: ARM and Blob, reads and writes, retries and 429s.
public actor RequestCounters {
    public struct Snapshot: Sendable, Equatable, Codable {
        public var armReads = 0
        public var armWrites = 0
        public var storageReads = 0
        public var storageWrites = 0
        public var retries = 0
        public var throttled = 0
        public var total: Int { armReads + armWrites + storageReads + storageWrites }
    }
    private var s = Snapshot()
    func sent(arm: Bool, write: Bool) {
        switch (arm, write) {
        case (true, false): s.armReads += 1
        case (true, true): s.armWrites += 1
        case (false, false): s.storageReads += 1
        case (false, true): s.storageWrites += 1
        }
    }
    func retried(throttled: Bool = false) {
        s.retries += 1
        if throttled { s.throttled += 1 }
    }
    func snapshot() -> Snapshot { s }
}

enum HTTPStatusNames {
    static func name(_ status: Int) -> String {
        switch status {
        case 400: return "BadRequest"
        case 401: return "Unauthorized"
        case 403: return "Forbidden"
        case 404: return "NotFound"
        case 409: return "Conflict"
        case 412: return "PreconditionFailed"
        case 429: return "TooManyRequests"
        case 500: return "InternalServerError"
        case 503: return "ServiceUnavailable"
        default: return "HTTP\(status)"
        }
    }
}

/// RFC 1123 dates (`x-ms-date`, `Retry-After`, `Last-Modified`): one formatter for the process, as
/// every Blob request formats one (a lock-box: DateFormatter is not safe to share unguarded).
enum HTTPDates {
    final class Shared: @unchecked Sendable {
        // @unchecked: `formatter` is only used under `lock`.
        private let lock = NSLock()
        private let formatter: DateFormatter = {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            return formatter
        }()
        func string(_ date: Date) -> String { lock.withLock { formatter.string(from: date) } }
        func date(_ text: String) -> Date? { lock.withLock { formatter.date(from: text) } }
    }
    static let shared = Shared()
    static func rfc1123(_ date: Date) -> String { shared.string(date) }
    static func parse(_ text: String) -> Date? { shared.date(text) }
}

/// Just enough XML reading for Blob's error bodies and lists: the text of the first element named so.
enum XMLText {
    static func first(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>", range: open.upperBound..<xml.endIndex) else { return nil }
        return unescape(String(xml[open.upperBound..<close.lowerBound]))
    }

    static func unescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        return s.replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }
}
