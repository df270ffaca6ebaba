"""Checks for the spec points no vector exercises: the gaps this implementation found (README.md,
"Spec gaps found") and a few worked examples the spec text gives. Run: python -m unittest -v
"""

import unittest

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PublicKey

from keyhold_spec.ed25519 import parse_public_key
from keyhold_spec.errors import KeyholdError
from keyhold_spec.keys import DeviceKeys, open_device_wrap, parse_recovery_key, recovery_key_display
from keyhold_spec.pairing import parse_code
from keyhold_spec.primitives import Label, padme
from keyhold_spec.xwing import combiner, hpke_seal_with_shared_secret, x25519

SECRET = bytes([0x99]) * 32
SECRET_TEXT = "K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CS-K6CN-6HD5"  # keys.md's example


class SpecExamples(unittest.TestCase):
    def test_padme_examples(self):
        # README, "Primitives", Padmé.
        for length, padded in ((9, 10), (100, 104), (1000, 1024), (1_000_000, 1_015_808)):
            self.assertEqual(padme(length), padded)
            self.assertEqual(padme(padded), padded)

    def test_recovery_key_display_example(self):
        self.assertEqual(recovery_key_display(SECRET), SECRET_TEXT)

    def test_non_canonical_ed25519_key_is_refused(self):
        # keys.md, "Canonical encoding": y = 3 + p.
        with self.assertRaises(KeyholdError) as caught:
            parse_public_key(bytes.fromhex("f0ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"))
        self.assertEqual(caught.exception.name, "Malformed")
        parse_public_key(bytes.fromhex("03" + "00" * 31))  # its canonical form is accepted


class TextParsingGaps(unittest.TestCase):
    def assert_refused(self, parse, text, name):
        with self.assertRaises(KeyholdError) as caught:
            parse(text)
        self.assertEqual(caught.exception.name, name)

    def test_recovery_key_trims_unicode_white_space_only(self):
        self.assertEqual(parse_recovery_key("\u3000\u00a0" + SECRET_TEXT + "\u2029\n"), SECRET)
        # U+001C..U+001F are white space to Python's str.strip(), not to Unicode (or Rust's trim).
        self.assert_refused(parse_recovery_key, "\x1c" + SECRET_TEXT, "InvalidRecoveryKey")

    def test_recovery_key_case_folds_ascii_only(self):
        self.assertEqual(parse_recovery_key(SECRET_TEXT.lower()), SECRET)
        self.assert_refused(parse_recovery_key, SECRET_TEXT.replace("K", "\u212a", 1), "InvalidRecoveryKey")

    def test_pairing_code_case_folds_ascii_only(self):
        self.assertEqual(parse_code("j79oz 74jbj"), "J790Z74JBJ")
        self.assertEqual(parse_code("J79OZ-74JBl"), "J790Z74JB1")
        # Python's "ı".upper() is "I", which would read as 1.
        self.assert_refused(parse_code, "J790Z-74JB\u0131", "InvalidPairingCode")
        self.assert_refused(parse_code, "J790Z-74JBJ\n", "InvalidPairingCode")  # no trimming here


class NonContributoryX25519(unittest.TestCase):
    def test_small_order_ct_x_gives_zero_and_the_wrap_still_opens(self):
        """README, "Primitives": no all-zero check. A wrap whose ct_X is of small order opens, as
        with the reference's `x-wing` DecapsulationKey; OpenSSL's X25519 would refuse it."""
        device = DeviceKeys(bytes([0x55]) * 32, bytes([0x66]) * 32)
        small_order_ct_x = bytes(32)  # u = 0
        self.assertEqual(x25519(bytes([0x42]) * 32, small_order_ct_x), bytes(32))
        ss_m, ct_m = MLKEM768PublicKey.from_public_bytes(device.kem.ek_m).encapsulate()
        shared_secret = combiner(ss_m, bytes(32), small_order_ct_x, device.kem.pk_x)
        account_id, epoch, root_key = bytes([0x33]) * 16, 3, bytes([0x44]) * 32
        aad = b"KHLD\x01\x01\x03" + account_id + device.device_id + b"\x01" + epoch.to_bytes(4, "big")
        ct = hpke_seal_with_shared_secret(shared_secret, Label.DEVICE_WRAP_INFO, aad, root_key)
        wrap = aad + ct_m + small_order_ct_x + ct
        self.assertEqual(open_device_wrap(wrap, device, account_id, epoch), root_key)


if __name__ == "__main__":
    unittest.main()
