import AsyncHTTPClient
import FactoryModel
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOSSL

/// One HTTP request as the Azure backend sends it: no policy, just the bytes.
public struct HTTPRequestData: Sendable {
    public var method: String
    public var url: URL
    public var headers: [(name: String, value: String)]
    public var body: Data?

    public init(method: String, url: URL, headers: [(name: String, value: String)] = [], body: Data? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    mutating func setHeader(_ name: String, _ value: String) {
        headers.removeAll { $0.name.lowercased() == name.lowercased() }
        headers.append((name, value))
    }
}

/// One HTTP response.
public struct HTTPResponseData: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: Data

    public init(status: Int, headers: [(name: String, value: String)] = [], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// The seam under the one HTTP client: sends bytes, knows no policy (auth, retries and throttling
/// live in `AzureHTTPClient`). Production uses async-http-client; tests may record or fake.
public protocol HTTPTransport: Sendable {
    /// Sends one request; throws `TransportError` when no response arrived (connection, TLS, time-out).
    func send(_ request: HTTPRequestData, timeout: Double) async throws -> HTTPResponseData
}

/// No response arrived: the connection failed, TLS was refused, or the time-out passed.
public struct TransportError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var isTimeout: Bool
    public init(_ message: String, isTimeout: Bool = false) {
        self.message = message
        self.isTimeout = isTimeout
    }
    public var description: String { message }
}

/// The production transport: one async-http-client `HTTPClient` per set of trusted roots, kept for
/// the life of the process (so it never needs an explicit shutdown, and every request shares one
/// connection pool). Redirects are not followed: ARM and Blob never redirect a correct request, and
/// a redirect must not carry a token elsewhere.
public struct AsyncHTTPTransport: HTTPTransport {
    let client: HTTPClient

    /// The transport for these extra trusted root certificates (a PEM file), made once per process.
    public static func shared(caFile: String?) throws -> AsyncHTTPTransport {
        try ClientRegistry.shared.client(caFile: caFile)
    }

    init(client: HTTPClient) {
        self.client = client
    }

    public func send(_ request: HTTPRequestData, timeout: Double) async throws -> HTTPResponseData {
        var r = HTTPClientRequest(url: request.url.absoluteString)
        r.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { r.headers.add(name: name, value: value) }
        if let body = request.body {
            r.body = .bytes(ByteBuffer(data: body))
        } else if ["PUT", "POST", "PATCH"].contains(request.method) {
            // Blob storage wants an explicit Content-Length: 0 on writes with no body.
            r.body = .bytes(ByteBuffer())
        }
        do {
            let response = try await client.execute(r, timeout: .milliseconds(Int64(max(1, timeout) * 1000)))
            let body = try await response.body.collect(upTo: 1 << 30)
            return HTTPResponseData(status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                                    body: Data(buffer: body))
        } catch let error as HTTPClientError {
            let timedOut = error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout
            throw TransportError("\(request.method) \(Redaction.url(request.url)): \(timedOut ? "no answer within \(Int(timeout)) s" : "\(error)")",
                                 isTimeout: timedOut)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw TransportError("\(request.method) \(Redaction.url(request.url)): \(error)")
        }
    }
}

/// The process's HTTP clients, one per set of trusted roots (a lock-box: creation is rare and fast).
final class ClientRegistry: @unchecked Sendable {
    // @unchecked: `clients` is only touched under `lock`.
    static let shared = ClientRegistry()
    private let lock = NSLock()
    private var clients: [String: HTTPClient] = [:]

    func client(caFile: String?) throws -> AsyncHTTPTransport {
        lock.lock()
        defer { lock.unlock() }
        let key = caFile ?? ""
        if let existing = clients[key] { return AsyncHTTPTransport(client: existing) }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            do {
                let roots = try NIOSSLCertificate.fromPEMFile(caFile)
                guard !roots.isEmpty else { throw TransportError("no certificate in the file") }
                tls.additionalTrustRoots = [.certificates(roots)]
            } catch {
                throw FactoryError(.usage, "Cannot read trusted root certificates from '\(caFile)': \(error).",
                                   hint: "--ca-file (IMAGEFACTORY_CA_FILE) takes a PEM file of one or more CA certificates.")
            }
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow,
                                                     timeout: .init(connect: .seconds(20), read: .seconds(300)))
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        clients[key] = client
        return AsyncHTTPTransport(client: client)
    }
}

/// Keeps secrets out of every message: SAS signatures and tokens in URLs and texts.
public enum Redaction {
    /// A URL safe to show: the query's `sig` (SAS signature) and any `token`/`code` values masked.
    public static func url(_ url: URL) -> String { text(url.absoluteString) }

    static let patterns: [(NSRegularExpression, String)] = [
        (try! NSRegularExpression(pattern: #"(?i)([?&](sig|token|code|client_secret|client_assertion)=)[^&\s'"]+"#), "$1REDACTED"),
        (try! NSRegularExpression(pattern: #"(?i)(bearer\s+)[A-Za-z0-9\-_\.=+/]+"#), "$1REDACTED"),
        (try! NSRegularExpression(pattern: #"(?i)(SharedKey\s+[a-z0-9]+:)[A-Za-z0-9+/=]+"#), "$1REDACTED"),
        (try! NSRegularExpression(pattern: #"eyJ[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*"#), "REDACTED-JWT"),
    ]

    /// A text with every SAS signature, bearer token, Shared Key signature and JWT masked.
    public static func text(_ text: String) -> String {
        var result = text
        for (regex, template) in patterns {
            result = regex.stringByReplacingMatches(in: result, range: NSRange(result.startIndex..., in: result), withTemplate: template)
        }
        return result
    }
}
