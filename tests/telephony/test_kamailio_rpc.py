"""Reading kamailio's RPC output (kamcmd's text form), as `hotline serve` does to find and hang up the
calls of a dead agent worker. The live behaviour is covered by tests/hotline_api/test_serve_pool.py."""
from __future__ import annotations

from telephony.kamailio import Backend, _contact_hostport, find_blocks, parse_rpc_records

# the shape kamcmd prints (two dialogs and a dispatcher set; values made up for the test)
DLG_LIST = """{
\th_entry: 10
\th_id: 4660
\tcall-id: a@b
\tfrom_uri: sip:13800000000@10.0.0.9
\tstate: 4
\tcaller: {
\t\ttag: ct1
\t\tcontact: sip:13800000000@10.0.0.9:5060
\t\tcseq: 1
\t}
\tcallee: {
\t\ttag: wt1
\t\tcontact: sip:12388@127.0.0.1:41000
\t\tcseq: 0
\t}
\tprofiles: {
\t\tcalls
\t}
}
{
\th_entry: 11
\tstate: 1
\tcallee: {
\t\tcontact: <null string>
\t}
}
"""
DS_LIST = """{
\tNRSETS: 1
\tRECORDS: {
\t\tSET: {
\t\t\tID: 1
\t\t\tTARGETS: {
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.1:41000
\t\t\t\t\tFLAGS: AP
\t\t\t\t\tRUNTIME: {
\t\t\t\t\t\tDLGLOAD: 2
\t\t\t\t\t}
\t\t\t\t}
\t\t\t\tDEST: {
\t\t\t\t\tURI: sip:127.0.0.1:41001
\t\t\t\t\tFLAGS: IP
\t\t\t\t\tRUNTIME: {
\t\t\t\t\t\tDLGLOAD: 0
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""


def test_dialog_records_with_nested_blocks():
    first, second = parse_rpc_records(DLG_LIST)
    assert first["h_id"] == "4660" and first["state"] == "4"
    assert first["caller"] == {"tag": "ct1", "contact": "sip:13800000000@10.0.0.9:5060", "cseq": "1"}
    assert first["callee"]["contact"] == "sip:12388@127.0.0.1:41000"
    assert second["state"] == "1" and second["callee"]["contact"] == "<null string>"


def test_repeated_blocks_become_a_list_and_are_all_found():
    (rec,) = parse_rpc_records(DS_LIST)
    dests = list(find_blocks(rec, "DEST"))
    assert [(d["URI"], d["FLAGS"], d["RUNTIME"]["DLGLOAD"]) for d in dests] == [
        ("sip:127.0.0.1:41000", "AP", "2"), ("sip:127.0.0.1:41001", "IP", "0")]


def test_callee_contact_names_the_worker():
    assert _contact_hostport("sip:12388@127.0.0.1:41000") == ("127.0.0.1", 41000)
    assert _contact_hostport("sip:12388@[::1]:5070;transport=udp") == ("::1", 5070)
    assert _contact_hostport("<null string>") is None
    b = Backend("127.0.0.1", 41000)
    assert _contact_hostport(parse_rpc_records(DLG_LIST)[0]["callee"]["contact"]) == (b.host, b.port)


def test_garbage_is_not_a_record():
    assert parse_rpc_records("") == [] and parse_rpc_records("error: 500 - command not found") == []
