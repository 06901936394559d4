//! Locking the agent with a passphrase (`ssh-add -x` / `-X`).
//!
//! Only an Argon2id hash of the passphrase is kept (a PHC string, with a random salt and the
//! crate's default cost: 19 MiB, 2 passes), never the passphrase itself; the request that
//! carried it is wiped by the server. Unlocking re-hashes the candidate and the `argon2` crate
//! compares the outputs in constant time. A slow hash, not a salted SHA-256: someone who reads
//! the agent's memory must not be able to test billions of guesses a second. Guesses through
//! the socket are slowed further by [`crate::agent`]'s global back-off.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use zeroize::Zeroizing;

pub struct Lock {
    /// `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`.
    phc: Zeroizing<String>,
}

impl Lock {
    /// Hash `passphrase`; `None` only if the hash cannot be computed (then the agent stays
    /// unlocked and says so, rather than locking with something nobody can unlock).
    pub fn new(passphrase: &[u8]) -> Option<Self> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).ok()?;
        let hash = Argon2::default().hash_password(passphrase, &salt).ok()?;
        Some(Lock {
            phc: Zeroizing::new(hash.to_string()),
        })
    }

    pub fn matches(&self, passphrase: &[u8]) -> bool {
        match PasswordHash::new(&self.phc) {
            Ok(h) => Argon2::default().verify_password(passphrase, &h).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_passphrase_unlocks() {
        let l = Lock::new(b"secret").unwrap();
        assert!(l.matches(b"secret"));
        assert!(!l.matches(b"Secret"));
        assert!(!l.matches(b""));
    }

    #[test]
    fn the_passphrase_is_kept_as_an_argon2id_hash() {
        let l = Lock::new(b"hunter2").unwrap();
        assert!(
            l.phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            *l.phc
        );
        assert!(!l.phc.contains("hunter2"));
        // A fresh salt each time: the same passphrase never hashes to the same string.
        assert_ne!(*l.phc, *Lock::new(b"hunter2").unwrap().phc);
    }
}
