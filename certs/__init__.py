"""The PKI that OpenADR 2.0b needs: CA, VTN and VEN certificates, fingerprints."""
