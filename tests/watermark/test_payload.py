"""The payload: tag, version, user id and CRC in 64 bits, and what decoding rejects."""

import numpy as np
import pytest

from mfs_fast import MfsError
from mfs_fast.watermark.payload import PAYLOAD_BITS, TAG_BITS, Payload, decode, encode


@pytest.mark.parametrize("user_id", [0, 1, 4242, 65535])
def test_round_trip(user_id):
    bits = encode("0.1.0", user_id)
    assert bits.shape == (PAYLOAD_BITS,) and set(np.unique(bits)) == {-1.0, 1.0}
    assert decode(bits * 0.3) == Payload("0.1", user_id)  # only the signs count


def test_the_tag_is_fixed_and_the_rest_differs():
    a, b = encode("0.1", 7), encode("2.3", 8)
    np.testing.assert_array_equal(a[:TAG_BITS], b[:TAG_BITS])
    assert decode(b) == Payload("2.3", 8)


@pytest.mark.parametrize("flip", [TAG_BITS, TAG_BITS + 9, PAYLOAD_BITS - 1])
def test_a_wrong_bit_fails_the_crc(flip):
    bits = encode("0.1", 1234)
    bits[flip] *= -1
    assert decode(bits) is None


@pytest.mark.parametrize("bad", [-1, 65536, 1.5, True, "7"])
def test_user_id_must_fit(bad):
    with pytest.raises(MfsError, match="user id must be a whole number from 0 to 65535"):
        encode("0.1", bad)
