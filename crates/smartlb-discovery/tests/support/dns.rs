//! A small authoritative DNS server on a loopback UDP port, with records the test sets
//! and a switch to make it fail.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, AAAA, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From the records.
    Answer,
    /// SERVFAIL to everything.
    ServFail,
    /// No answer at all (the client times out).
    Silent,
}

struct Zone {
    records: Vec<Record>,
    mode: Mode,
    /// Put the targets' addresses into SRV answers' additional section.
    glue: bool,
}

/// The server; stops when dropped.
pub struct DnsServer {
    pub addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn name(text: &str) -> Name {
    let mut name = Name::from_ascii(text).unwrap();
    name.set_fqdn(true);
    name
}

impl DnsServer {
    pub async fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone {
            records: Vec::new(),
            mode: Mode::Answer,
            glue: false,
        }));
        let shared = zone.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let Some(response) = answer(&shared, &request) else {
                    continue;
                };
                if let Ok(bytes) = response.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        DnsServer { addr, zone, task }
    }

    /// Replaces `owner`'s address records (A for IPv4, AAAA for IPv6).
    pub fn set_addresses(&self, owner: &str, ips: &[IpAddr]) {
        let owner = name(owner);
        let mut zone = self.zone.lock().unwrap();
        zone.records.retain(|r| {
            !(r.name == owner && matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        });
        for ip in ips {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            zone.records
                .push(Record::from_rdata(owner.clone(), 0, data));
        }
    }

    /// Replaces `owner`'s SRV records: (priority, weight, port, target).
    pub fn set_srv(&self, owner: &str, records: &[(u16, u16, u16, &str)]) {
        let owner = name(owner);
        let mut zone = self.zone.lock().unwrap();
        zone.records
            .retain(|r| !(r.name == owner && r.record_type() == RecordType::SRV));
        for (priority, weight, port, target) in records {
            let data = RData::SRV(SRV::new(*priority, *weight, *port, name(target)));
            zone.records
                .push(Record::from_rdata(owner.clone(), 0, data));
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.zone.lock().unwrap().mode = mode;
    }

    pub fn set_glue(&self, glue: bool) {
        self.zone.lock().unwrap().glue = glue;
    }
}

fn answer(zone: &Mutex<Zone>, request: &Message) -> Option<Message> {
    let zone = zone.lock().unwrap();
    let query = request.queries.first()?.clone();
    let id = request.metadata.id;
    let op_code = request.metadata.op_code;
    let mut response = match zone.mode {
        Mode::Silent => return None,
        Mode::ServFail => Message::error_msg(id, op_code, ResponseCode::ServFail),
        Mode::Answer => Message::response(id, op_code),
    };
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    response.add_query(query.clone());
    if zone.mode != Mode::Answer {
        return Some(response);
    }
    let owner = query.name.to_lowercase();
    let known = zone.records.iter().any(|r| r.name.to_lowercase() == owner);
    let answers: Vec<Record> = zone
        .records
        .iter()
        .filter(|r| r.name.to_lowercase() == owner && r.record_type() == query.query_type)
        .cloned()
        .collect();
    if zone.glue {
        for record in &answers {
            if let RData::SRV(srv) = &record.data {
                let target = srv.target.to_lowercase();
                for glue in &zone.records {
                    if glue.name.to_lowercase() == target
                        && matches!(glue.record_type(), RecordType::A | RecordType::AAAA)
                    {
                        response.add_additional(glue.clone());
                    }
                }
            }
        }
    }
    if !known {
        response.metadata.response_code = ResponseCode::NXDomain;
    }
    response.add_answers(answers);
    Some(response)
}
