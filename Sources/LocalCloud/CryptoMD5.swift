import Crypto
import Foundation

struct CryptoMD5 {
    private var hasher = Insecure.MD5()
    mutating func update(_ data: Data) { hasher.update(data: data) }
    func finalize() -> [UInt8] { Array(hasher.finalize()) }
}
