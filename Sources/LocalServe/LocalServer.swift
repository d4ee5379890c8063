import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One request answered, for the CLI's request log (the library never prints).
public struct ServedRequest: Sendable {
    public var method: String
    public var path: String
    public var status: Int
    public var seconds: Double
}

/// The HTTP/1.1 listener of `local serve`: SwiftNIO on loopback, optionally TLS, handing each
/// request to a `LocalServeService`. One task per connection inside a task group; requests on a
/// keep-alive connection are answered in order.
public struct LocalServer: Sendable {
    public struct TLSFiles: Sendable {
        public var certificatePath: String
        public var privateKeyPath: String
        public init(certificatePath: String, privateKeyPath: String) {
            self.certificatePath = certificatePath
            self.privateKeyPath = privateKeyPath
        }
    }

    public let service: LocalServeService
    public let host: String
    public let port: Int
    public let tls: TLSFiles?

    public init(service: LocalServeService, host: String = "127.0.0.1", port: Int = 0, tls: TLSFiles? = nil) {
        self.service = service
        self.host = host
        self.port = port
        self.tls = tls
    }

    /// Largest request body accepted (a VHD upload in one Put Blob stays well below).
    static let maxBody = 512 << 20

    /// Binds, reports the bound port through `onListening`, and serves until the task is cancelled.
    public func run(onListening: @Sendable (Int) -> Void = { _ in },
                    onRequest: @escaping @Sendable (ServedRequest) -> Void = { _ in }) async throws {
        let sslContext: NIOSSLContext?
        if let tls {
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificatePath).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.privateKeyPath, format: .pem)
            sslContext = try NIOSSLContext(configuration: .makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key)))
        } else {
            sslContext = nil
        }
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let sslContext {
                        try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: sslContext))
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                }
            }
        onListening(server.channel.localAddress?.port ?? port)
        let scheme = tls == nil ? "http" : "https"
        try await withTaskCancellationHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await serve(connection, scheme: scheme, onRequest: onRequest) }
                    }
                }
            }
        } onCancel: {
            // Closing the listening socket ends the accept loop; open connections end with their tasks.
            server.channel.close(promise: nil)
        }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, scheme: String,
                       onRequest: @Sendable (ServedRequest) -> Void) async {
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                var body = ByteBuffer()
                var tooLarge = false
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        head = h
                        body.clear()
                        tooLarge = false
                    case .body(var chunk):
                        if body.readableBytes + chunk.readableBytes > Self.maxBody { tooLarge = true } else { body.writeBuffer(&chunk) }
                    case .end:
                        guard let h = head else { continue }
                        let started = Date()
                        let request = ServeRequest(method: h.method.rawValue, target: h.uri,
                                                   headers: h.headers.map { ($0.name, $0.value) },
                                                   body: Data(buffer: body), scheme: scheme)
                        let response = tooLarge
                            ? ServeResponse.armError(413, "RequestBodyTooLarge", "The request body is larger than \(Self.maxBody >> 20) MiB.")
                            : await service.respond(request)
                        var headers = HTTPHeaders(response.headers.map { ($0.name, $0.value) })
                        // A HEAD answer states the entity's length (set by the handler) but carries no body.
                        if h.method != .HEAD || !headers.contains(name: "Content-Length") {
                            headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
                        }
                        if !h.isKeepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
                        try await outbound.write(.head(HTTPResponseHead(version: h.version, status: HTTPResponseStatus(statusCode: response.status), headers: headers)))
                        if h.method != .HEAD && !response.body.isEmpty {
                            try await outbound.write(.body(.byteBuffer(ByteBuffer(data: response.body))))
                        }
                        try await outbound.write(.end(nil))
                        onRequest(ServedRequest(method: request.method, path: h.uri, status: response.status, seconds: Date().timeIntervalSince(started)))
                        head = nil
                        if !h.isKeepAlive { return }
                    }
                }
            }
        } catch {
            // A client that hangs up mid-request is its own business; the server goes on.
        }
    }
}
