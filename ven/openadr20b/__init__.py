"""The agent's OpenADR 2.0b edge: openleadr's client (mutual TLS, signed XML), its
event parsing and the outbox uplink. ven/openadr31/ is its sibling; neither imports
the other, both serve the protocol-neutral agent core (ven/agent.py) through the same
small interface (`Link`).
"""
