"""The client over TLS (server certificate checked against given roots) to the local server."""

import datetime
import ipaddress

import pytest

from spanet.serving.client import ServingClient, ServingUnavailableError
from spanet.serving.config import ClientConfig, RetryPolicy, ServerConfig, TLSConfig
from spanet.serving.server import LocalServer

pytestmark = pytest.mark.slow


def _self_signed(folder):
    """A self-signed certificate for localhost / 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


def test_client_over_tls(source_base_dir, tmp_path, sample_images):
    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path)
    config = ServerConfig(
        model_base_path=str(source_base_dir),
        host="127.0.0.1",
        port=0,
        warmup=False,
        tls=TLSConfig(cert_chain=cert, private_key=key),
    )
    with LocalServer(config) as server:
        target = f"127.0.0.1:{server.port}"
        tls = TLSConfig(root_certs=cert, server_name_override="localhost")
        with ServingClient(ClientConfig(target=target, tls=tls)) as client:
            assert client.wait_until_ready(timeout_s=10) == server.manager.current_version
            assert len(client.predict_images(sample_images[:2])) == 2
        # a plain-text client cannot talk to the TLS port
        quick = RetryPolicy(max_attempts=2, initial_backoff_s=0.01)
        with ServingClient(ClientConfig(target=target, timeout_s=2, retry=quick)) as plain:
            with pytest.raises(ServingUnavailableError):
                plain.model_status()
    with pytest.raises(OSError, match="cannot read TLS root certificates file"):
        ServingClient(ClientConfig(target="127.0.0.1:1", tls=TLSConfig(root_certs=str(tmp_path / "none.pem"))))
