import Crypto
import FactoryModel
import Foundation

/// The Blob service of each storage account: containers, blobs, server-side copies and leases.
extension AzureBackend {
    // MARK: Endpoints and authorization

    /// The account's Blob endpoint as ARM gives it (`https://{account}.blob.core.windows.net/` in
    /// Azure, `https://127.0.0.1:PORT/{account}/` on `local serve`), with a trailing slash.
    func blobEndpoint(_ account: StorageAccountID) async throws -> URL {
        try await accounts.endpoint(account) { [self] in
            let json = try await armJSON(account.resourceId, apiVersion: AzureAPIVersions.storage)
            guard let text = Self.string(json, "properties", "primaryEndpoints", "blob"), let url = URL(string: text.hasSuffix("/") ? text : text + "/") else {
                throw CloudError(status: 502, code: "InvalidResponse", message: "The storage account \(account.name) has no primaryEndpoints.blob.")
            }
            return url
        }
    }

    static let blobPathAllowed: CharacterSet = {
        var set = CharacterSet.alphanumerics
        set.insert(charactersIn: "-._~/!$&'()*+,;=:@")
        return set
    }()

    func containerURL(_ id: ContainerID, query: String) async throws -> URL {
        let base = try await blobEndpoint(id.account)
        return URL(string: base.absoluteString + id.name + query)!
    }

    func blobURL(_ id: BlobID, query: String = "") async throws -> URL {
        let base = try await blobEndpoint(id.container.account)
        let name = id.name.addingPercentEncoding(withAllowedCharacters: Self.blobPathAllowed) ?? id.name
        guard let url = URL(string: base.absoluteString + id.container.name + "/" + name + query) else {
            throw CloudError(status: 400, code: "InvalidBlobName", message: "Cannot form a URL for blob \(id).")
        }
        return url
    }

    func storageAuthorization(_ account: StorageAccountID) async throws -> RequestAuth {
        switch storageAuth {
        case .entra:
            return .storage
        case .key:
            let key = try await accounts.key(account) { [self] in
                let json = try Self.object(try await arm("POST", "\(account.resourceId)/listKeys", apiVersion: AzureAPIVersions.storage))
                guard let first = (json["keys"] as? [[String: Any]])?.first?["value"] as? String, let key = Data(base64Encoded: first) else {
                    throw CloudError(status: 502, code: "InvalidResponse", message: "listKeys on \(account.name) returned no key.")
                }
                return key
            }
            return .sharedKey(account: account.name, key: key)
        }
    }

    @discardableResult
    func blob(_ method: String, _ url: URL, account: StorageAccountID, headers: [(name: String, value: String)] = [], body: Data? = nil) async throws -> HTTPResponseData {
        try await http.send(AzureRequest(method: method, url: url, headers: headers, body: body, auth: try await storageAuthorization(account)))
    }

    // MARK: Containers

    public func createContainer(_ id: ContainerID) async throws {
        try await blob("PUT", try await containerURL(id, query: "?restype=container"), account: id.account)
    }

    public func deleteContainer(_ id: ContainerID) async throws {
        try await blob("DELETE", try await containerURL(id, query: "?restype=container"), account: id.account)
    }

    public func listContainers(account: StorageAccountID) async throws -> [String] {
        let base = try await blobEndpoint(account)
        var names: [String] = []
        var marker = ""
        repeat {
            let url = URL(string: base.absoluteString + "?comp=list" + (marker.isEmpty ? "" : "&marker=\(Self.queryEncode(marker))"))!
            let xml = String(decoding: try await blob("GET", url, account: account).body, as: UTF8.self)
            names += BlobListXML.elements("Container", in: xml).compactMap { XMLText.first("Name", in: $0) }
            marker = XMLText.first("NextMarker", in: xml) ?? ""
        } while !marker.isEmpty
        return names
    }

    // MARK: Blobs

    public func putBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        let md5 = Data(Insecure.MD5.hash(data: data)).base64EncodedString()
        var headers: [(name: String, value: String)] = [("x-ms-blob-type", "BlockBlob"), ("Content-MD5", md5), ("Content-Type", "application/octet-stream")]
        headers += metadata.sorted { $0.key < $1.key }.map { ("x-ms-meta-\($0.key)", $0.value) }
        let response = try await blob("PUT", try await blobURL(id), account: id.container.account, headers: headers, body: data)
        return BlobProperties(id: id, contentLength: Int64(data.count), contentMD5: response.header("Content-MD5") ?? md5,
                              lastModified: response.header("Last-Modified").flatMap(HTTPDates.parse) ?? http.clock.now(), metadata: metadata)
    }

    /// Put Blob of a page blob (its size, and the Content-MD5 the client computed: Azure computes
    /// none for page blobs), then Put Page for each run of written pages, at most 4 MiB a request.
    public func putPageBlob(_ id: BlobID, data: Data, metadata: [String: String]) async throws -> BlobProperties {
        guard data.count % PageBlobLayout.pageSize == 0 else {
            throw CloudError(status: 400, code: "InvalidHeaderValue",
                             message: "A page blob's size must be a multiple of 512 bytes; \(id) would be \(data.count).")
        }
        let md5 = Data(Insecure.MD5.hash(data: data)).base64EncodedString()
        var headers: [(name: String, value: String)] = [
            ("x-ms-blob-type", "PageBlob"), ("x-ms-blob-content-length", String(data.count)), ("x-ms-blob-content-md5", md5),
            ("x-ms-blob-content-type", "application/octet-stream"),
        ]
        headers += metadata.sorted { $0.key < $1.key }.map { ("x-ms-meta-\($0.key)", $0.value) }
        let url = try await blobURL(id)
        var response = try await blob("PUT", url, account: id.container.account, headers: headers, body: Data())
        for range in PageBlobLayout.writtenRuns(data) {
            let chunk = data.subdata(in: range)
            response = try await blob("PUT", try await blobURL(id, query: "?comp=page"), account: id.container.account,
                                      headers: [("x-ms-page-write", "update"), ("x-ms-range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"),
                                                ("Content-MD5", Data(Insecure.MD5.hash(data: chunk)).base64EncodedString())],
                                      body: chunk)
        }
        return BlobProperties(id: id, blobType: .pageBlob, contentLength: Int64(data.count), contentMD5: md5,
                              lastModified: response.header("Last-Modified").flatMap(HTTPDates.parse) ?? http.clock.now(), metadata: metadata)
    }

    public func getBlob(_ id: BlobID) async throws -> Data {
        try await blob("GET", try await blobURL(id), account: id.container.account).body
    }

    public func getBlobProperties(_ id: BlobID) async throws -> BlobProperties {
        let response = try await blob("HEAD", try await blobURL(id), account: id.container.account)
        return Self.properties(id, response)
    }

    static func properties(_ id: BlobID, _ response: HTTPResponseData) -> BlobProperties {
        var metadata: [String: String] = [:]
        for (name, value) in response.headers where name.lowercased().hasPrefix("x-ms-meta-") {
            metadata[String(name.dropFirst("x-ms-meta-".count))] = value
        }
        return BlobProperties(id: id, blobType: response.header("x-ms-blob-type").flatMap(BlobType.init(rawValue:)) ?? .blockBlob,
                              contentLength: response.header("Content-Length").flatMap(Int64.init) ?? 0,
                              contentMD5: response.header("Content-MD5"),
                              lastModified: response.header("Last-Modified").flatMap(HTTPDates.parse) ?? Date(timeIntervalSince1970: 0),
                              metadata: metadata, copyStatus: response.header("x-ms-copy-status").flatMap { CopyStatus(rawValue: $0.lowercased()) },
                              copyStatusDescription: response.header("x-ms-copy-status-description"),
                              copyProgress: response.header("x-ms-copy-progress"))
    }

    public func listBlobs(container: ContainerID, prefix: String?) async throws -> [BlobProperties] {
        var result: [BlobProperties] = []
        var marker = ""
        repeat {
            var query = "?restype=container&comp=list&include=metadata,copy"
            if let prefix { query += "&prefix=\(Self.queryEncode(prefix))" }
            if !marker.isEmpty { query += "&marker=\(Self.queryEncode(marker))" }
            let xml = String(decoding: try await blob("GET", try await containerURL(container, query: query), account: container.account).body, as: UTF8.self)
            for element in BlobListXML.elements("Blob", in: xml) {
                guard let name = XMLText.first("Name", in: element) else { continue }
                result.append(BlobListXML.properties(BlobID(container: container, name: name), element))
            }
            marker = XMLText.first("NextMarker", in: xml) ?? ""
        } while !marker.isEmpty
        return result
    }

    public func deleteBlob(_ id: BlobID) async throws {
        try await blob("DELETE", try await blobURL(id), account: id.container.account)
    }

    // MARK: Copies

    /// Copy Blob. A source in another storage account gets a read-only SAS valid for eight hours
    /// (a copy of a large VHD can take that long), signed by the backend: a user delegation SAS
    /// with Entra, a service SAS with the account key. A source in the same account needs none.
    public func startBlobCopy(from source: BlobID, to destination: BlobID) async throws -> BlobProperties {
        var sourceURL = try await blobURL(source).absoluteString
        if source.container.account.resourceId.lowercased() != destination.container.account.resourceId.lowercased() {
            sourceURL += "?" + (try await readSAS(source, hours: 8))
        }
        return try await startCopy(sourceURL: sourceURL, to: destination)
    }

    func startCopy(sourceURL: String, to destination: BlobID) async throws -> BlobProperties {
        let response = try await blob("PUT", try await blobURL(destination), account: destination.container.account,
                                      headers: [("x-ms-copy-source", sourceURL)])
        var properties = Self.properties(destination, response)
        properties.contentLength = 0
        properties.copyStatus = response.header("x-ms-copy-status").flatMap { CopyStatus(rawValue: $0.lowercased()) } ?? .pending
        return properties
    }

    func readSAS(_ source: BlobID, hours: Double) async throws -> String {
        let now = http.clock.now()
        let start = now.addingTimeInterval(-300)  // clock skew
        let expiry = now.addingTimeInterval(hours * 3600)
        let account = source.container.account
        switch storageAuth {
        case .key:
            guard case .sharedKey(_, let key) = try await storageAuthorization(account) else { fatalError("key auth without a key") }
            return SASSigner.service(account: account.name, container: source.container.name, blob: source.name, start: start, expiry: expiry, accountKey: key)
        case .entra:
            let key = try await accounts.delegationKey(account, now: now) { [self] in
                let keyExpiry = now.addingTimeInterval(24 * 3600)
                let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><KeyInfo><Start>\(SASSigner.iso(start))</Start><Expiry>\(SASSigner.iso(keyExpiry))</Expiry></KeyInfo>"
                let base = try await blobEndpoint(account)
                let url = URL(string: base.absoluteString + "?restype=service&comp=userdelegationkey")!
                let xml = String(decoding: try await blob("POST", url, account: account, headers: [("Content-Type", "application/xml")], body: Data(body.utf8)).body,
                                 as: UTF8.self)
                guard let oid = XMLText.first("SignedOid", in: xml), let tid = XMLText.first("SignedTid", in: xml),
                      let ks = XMLText.first("SignedStart", in: xml), let ke = XMLText.first("SignedExpiry", in: xml),
                      let service = XMLText.first("SignedService", in: xml), let version = XMLText.first("SignedVersion", in: xml),
                      let value = XMLText.first("Value", in: xml) else {
                    throw CloudError(status: 502, code: "InvalidResponse", message: "Get User Delegation Key on \(account.name) answered without a key.")
                }
                return (UserDelegationKey(signedOid: oid, signedTid: tid, signedStart: ks, signedExpiry: ke, signedService: service,
                                          signedVersion: version, value: value), keyExpiry)
            }
            return SASSigner.userDelegation(account: account.name, container: source.container.name, blob: source.name, start: start, expiry: expiry, key: key)
        }
    }

    public func abortBlobCopy(_ id: BlobID) async throws {
        let head = try await blob("HEAD", try await blobURL(id), account: id.container.account)
        guard let copyID = head.header("x-ms-copy-id") else {
            throw CloudError(status: 409, code: "NoPendingCopyOperation", message: "There is currently no pending copy operation on \(id).")
        }
        try await blob("PUT", try await blobURL(id, query: "?comp=copy&copyid=\(Self.queryEncode(copyID))"), account: id.container.account,
                       headers: [("x-ms-copy-action", "abort")])
    }

    // MARK: Leases

    public func acquireLease(_ id: BlobID, duration: Double, proposedLeaseID: String) async throws -> String {
        let seconds = duration < 0 ? -1 : Int(min(60, max(15, duration.rounded())))
        let response = try await blob("PUT", try await blobURL(id, query: "?comp=lease"), account: id.container.account, headers: [
            ("x-ms-lease-action", "acquire"), ("x-ms-lease-duration", String(seconds)), ("x-ms-proposed-lease-id", proposedLeaseID),
        ])
        return response.header("x-ms-lease-id") ?? proposedLeaseID
    }

    public func renewLease(_ id: BlobID, leaseID: String) async throws {
        try await blob("PUT", try await blobURL(id, query: "?comp=lease"), account: id.container.account,
                       headers: [("x-ms-lease-action", "renew"), ("x-ms-lease-id", leaseID)])
    }

    public func releaseLease(_ id: BlobID, leaseID: String) async throws {
        try await blob("PUT", try await blobURL(id, query: "?comp=lease"), account: id.container.account,
                       headers: [("x-ms-lease-action", "release"), ("x-ms-lease-id", leaseID)])
    }

    public func breakLease(_ id: BlobID, period: Double?) async throws -> Int {
        var headers: [(name: String, value: String)] = [("x-ms-lease-action", "break")]
        if let period { headers.append(("x-ms-lease-break-period", String(Int(max(0, min(60, period.rounded())))))) }
        let response = try await blob("PUT", try await blobURL(id, query: "?comp=lease"), account: id.container.account, headers: headers)
        return response.header("x-ms-lease-time").flatMap(Int.init) ?? 0
    }
}

/// The Blob service's list XML: `<Blob>` / `<Container>` elements and their properties.
enum BlobListXML {
    /// The inner text of every `<name>…</name>` element, in order (Blob lists never nest them).
    static func elements(_ name: String, in xml: String) -> [String] {
        var result: [String] = []
        var rest = xml[...]
        while let open = rest.range(of: "<\(name)>"), let close = rest.range(of: "</\(name)>", range: open.upperBound..<rest.endIndex) {
            result.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return result
    }

    static func properties(_ id: BlobID, _ element: String) -> BlobProperties {
        var metadata: [String: String] = [:]
        if let block = elements("Metadata", in: element).first {
            var rest = block[...]
            while let open = rest.range(of: "<"), let end = rest.range(of: ">", range: open.upperBound..<rest.endIndex) {
                let tag = String(rest[open.upperBound..<end.lowerBound])
                guard !tag.hasPrefix("/"), let close = rest.range(of: "</\(tag)>", range: end.upperBound..<rest.endIndex) else { break }
                metadata[tag] = XMLText.unescape(String(rest[end.upperBound..<close.lowerBound]))
                rest = rest[close.upperBound...]
            }
        }
        return BlobProperties(id: id, blobType: XMLText.first("BlobType", in: element).flatMap(BlobType.init(rawValue:)) ?? .blockBlob,
                              contentLength: XMLText.first("Content-Length", in: element).flatMap(Int64.init) ?? 0,
                              contentMD5: XMLText.first("Content-MD5", in: element).flatMap { $0.isEmpty ? nil : $0 },
                              lastModified: XMLText.first("Last-Modified", in: element).flatMap(HTTPDates.parse) ?? Date(timeIntervalSince1970: 0),
                              metadata: metadata, copyStatus: XMLText.first("CopyStatus", in: element).flatMap { CopyStatus(rawValue: $0.lowercased()) },
                              copyStatusDescription: XMLText.first("CopyStatusDescription", in: element),
                              copyProgress: XMLText.first("CopyProgress", in: element))
    }
}
