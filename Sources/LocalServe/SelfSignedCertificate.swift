import Crypto
import Foundation
import SwiftASN1
import X509

/// The self-signed certificate of `local serve --tls`, for clients that insist on https (the Azure
/// SDKs' token credentials do). Kept in the state directory and reused while valid, so a client
/// configured to trust it keeps working across restarts.
public enum SelfSignedCertificate {
    public struct Files: Sendable {
        public var certificatePath: String
        public var privateKeyPath: String
        /// Whether this call made them (false: reused).
        public var created: Bool
    }

    /// The certificate and key under `{stateDirectory}/tls/`, made if missing or expiring within a day.
    public static func ensure(in stateDirectory: URL, now: Date = Date()) throws -> Files {
        let dir = stateDirectory.appendingPathComponent("tls")
        let certURL = dir.appendingPathComponent("localcloud-cert.pem")
        let keyURL = dir.appendingPathComponent("localcloud-key.pem")
        if let pem = try? String(contentsOf: certURL, encoding: .utf8), FileManager.default.fileExists(atPath: keyURL.path),
           let cert = try? Certificate(pemEncoded: pem), cert.notValidAfter > now.addingTimeInterval(86_400) {
            return Files(certificatePath: certURL.path, privateKeyPath: keyURL.path, created: false)
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            CommonName("ImageFactory local cloud")
            OrganizationName("ImageFactory")
        }
        let publicKey = Certificate.PublicKey(key.publicKey)
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: publicKey,
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(365 * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                // Its own trust anchor: clients point their CA bundle at this file.
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                try ExtendedKeyUsage([.serverAuth])
                SubjectKeyIdentifier(hash: publicKey)
                SubjectAlternativeNames([.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            },
            issuerPrivateKey: Certificate.PrivateKey(key))
        try certificate.serializeAsPEM().pemString.write(to: certURL, atomically: true, encoding: .utf8)
        try key.pemRepresentation.write(to: keyURL, atomically: true, encoding: .utf8)
        try? FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: keyURL.path)
        return Files(certificatePath: certURL.path, privateKeyPath: keyURL.path, created: true)
    }
}
