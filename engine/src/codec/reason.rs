//! MQTT 5.0 reason codes, which packets may carry each, and their MQTT 3.x equivalents.
//!
//! The engine speaks reason codes internally for clients of every version; this module is the one place
//! that folds them into the few return codes MQTT 3.x has.

use std::fmt;

use super::types::{PacketType, QoS};

macro_rules! reason_codes {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $text:literal; )*) => {
        /// A reason code of MQTT 5.0 (spec table 2-6).
        ///
        /// `0x00` has three names in the spec (Success, Normal disconnection, Granted QoS 0); here it is
        /// always [`ReasonCode::Success`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum ReasonCode {
            $( $(#[$doc])* $name = $value, )*
        }

        impl ReasonCode {
            /// Parses a reason code byte; `None` for values the spec does not define.
            pub fn from_u8(value: u8) -> Option<ReasonCode> {
                match value {
                    $( $value => Some(ReasonCode::$name), )*
                    _ => None,
                }
            }

            /// The spec's name for the code.
            pub fn description(self) -> &'static str {
                match self {
                    $( ReasonCode::$name => $text, )*
                }
            }
        }
    };
}

reason_codes! {
    /// Success; also Normal disconnection and Granted QoS 0.
    Success = 0x00, "Success";
    /// SUBACK: the subscription is granted at QoS 1.
    GrantedQoS1 = 0x01, "Granted QoS 1";
    /// SUBACK: the subscription is granted at QoS 2.
    GrantedQoS2 = 0x02, "Granted QoS 2";
    /// DISCONNECT: close normally but publish the will message.
    DisconnectWithWill = 0x04, "Disconnect with Will Message";
    /// PUBACK/PUBREC: accepted, but nobody subscribes.
    NoMatchingSubscribers = 0x10, "No matching subscribers";
    /// UNSUBACK: there was no such subscription.
    NoSubscriptionExisted = 0x11, "No subscription existed";
    /// AUTH: continue the authentication exchange.
    ContinueAuthentication = 0x18, "Continue authentication";
    /// AUTH: start a re-authentication.
    ReAuthenticate = 0x19, "Re-authenticate";
    /// A failure with no more specific code.
    UnspecifiedError = 0x80, "Unspecified error";
    /// The packet could not be parsed.
    MalformedPacket = 0x81, "Malformed Packet";
    /// The packet parsed but broke a protocol rule.
    ProtocolError = 0x82, "Protocol Error";
    /// Valid, but refused by this implementation.
    ImplementationSpecificError = 0x83, "Implementation specific error";
    /// CONNACK: the protocol version is not supported.
    UnsupportedProtocolVersion = 0x84, "Unsupported Protocol Version";
    /// CONNACK: the client identifier is not allowed.
    ClientIdentifierNotValid = 0x85, "Client Identifier not valid";
    /// CONNACK: bad user name or password.
    BadUserNameOrPassword = 0x86, "Bad User Name or Password";
    /// Not authorized.
    NotAuthorized = 0x87, "Not authorized";
    /// CONNACK: the server is not available.
    ServerUnavailable = 0x88, "Server unavailable";
    /// The server is busy.
    ServerBusy = 0x89, "Server busy";
    /// CONNACK: this client is banned.
    Banned = 0x8A, "Banned";
    /// DISCONNECT: the server is shutting down.
    ServerShuttingDown = 0x8B, "Server shutting down";
    /// The authentication method is not supported or does not match.
    BadAuthenticationMethod = 0x8C, "Bad authentication method";
    /// DISCONNECT: nothing received within 1.5 keep-alive periods.
    KeepAliveTimeout = 0x8D, "Keep Alive timeout";
    /// DISCONNECT: another connection took over this session.
    SessionTakenOver = 0x8E, "Session taken over";
    /// The topic filter is well formed but not accepted.
    TopicFilterInvalid = 0x8F, "Topic Filter invalid";
    /// The topic name is well formed but not accepted.
    TopicNameInvalid = 0x90, "Topic Name invalid";
    /// The packet identifier is already in use.
    PacketIdentifierInUse = 0x91, "Packet Identifier in use";
    /// PUBREL/PUBCOMP: the packet identifier is unknown.
    PacketIdentifierNotFound = 0x92, "Packet Identifier not found";
    /// DISCONNECT: more unacknowledged QoS 1/2 publishes than Receive Maximum.
    ReceiveMaximumExceeded = 0x93, "Receive Maximum exceeded";
    /// DISCONNECT: topic alias 0, over the maximum, or unknown.
    TopicAliasInvalid = 0x94, "Topic Alias invalid";
    /// The packet exceeds the maximum packet size.
    PacketTooLarge = 0x95, "Packet too large";
    /// DISCONNECT: the publish rate is too high.
    MessageRateTooHigh = 0x96, "Message rate too high";
    /// A quota was exceeded.
    QuotaExceeded = 0x97, "Quota exceeded";
    /// DISCONNECT: closed by an administrator.
    AdministrativeAction = 0x98, "Administrative action";
    /// The payload does not match the Payload Format Indicator.
    PayloadFormatInvalid = 0x99, "Payload format invalid";
    /// Retained messages are not supported.
    RetainNotSupported = 0x9A, "Retain not supported";
    /// The QoS is greater than the Maximum QoS.
    QoSNotSupported = 0x9B, "QoS not supported";
    /// Use another server, temporarily.
    UseAnotherServer = 0x9C, "Use another server";
    /// Use another server, permanently.
    ServerMoved = 0x9D, "Server moved";
    /// Shared subscriptions are not supported.
    SharedSubscriptionsNotSupported = 0x9E, "Shared Subscriptions not supported";
    /// Too many connection attempts.
    ConnectionRateExceeded = 0x9F, "Connection rate exceeded";
    /// DISCONNECT: the maximum connection time is over.
    MaximumConnectTime = 0xA0, "Maximum connect time";
    /// Subscription identifiers are not supported.
    SubscriptionIdentifiersNotSupported = 0xA1, "Subscription Identifiers not supported";
    /// Wildcard subscriptions are not supported.
    WildcardSubscriptionsNotSupported = 0xA2, "Wildcard Subscriptions not supported";
}

impl ReasonCode {
    /// The numeric value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Codes of 0x80 and above report a failure.
    pub fn is_error(self) -> bool {
        self.as_u8() >= 0x80
    }

    /// The SUBACK code granting a subscription at `qos`.
    pub fn granted(qos: QoS) -> ReasonCode {
        match qos {
            QoS::AtMostOnce => ReasonCode::Success,
            QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
            QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
        }
    }

    /// Whether the spec allows this code in a packet of type `packet` (the per-packet tables of MQTT 5.0).
    pub fn allowed_in(self, packet: PacketType) -> bool {
        use ReasonCode::*;
        match packet {
            PacketType::ConnAck => matches!(
                self,
                Success
                    | UnspecifiedError
                    | MalformedPacket
                    | ProtocolError
                    | ImplementationSpecificError
                    | UnsupportedProtocolVersion
                    | ClientIdentifierNotValid
                    | BadUserNameOrPassword
                    | NotAuthorized
                    | ServerUnavailable
                    | ServerBusy
                    | Banned
                    | BadAuthenticationMethod
                    | TopicNameInvalid
                    | PacketTooLarge
                    | QuotaExceeded
                    | PayloadFormatInvalid
                    | RetainNotSupported
                    | QoSNotSupported
                    | UseAnotherServer
                    | ServerMoved
                    | ConnectionRateExceeded
            ),
            PacketType::PubAck | PacketType::PubRec => matches!(
                self,
                Success
                    | NoMatchingSubscribers
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicNameInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | PayloadFormatInvalid
            ),
            PacketType::PubRel | PacketType::PubComp => {
                matches!(self, Success | PacketIdentifierNotFound)
            }
            PacketType::SubAck => matches!(
                self,
                Success
                    | GrantedQoS1
                    | GrantedQoS2
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
                    | QuotaExceeded
                    | SharedSubscriptionsNotSupported
                    | SubscriptionIdentifiersNotSupported
                    | WildcardSubscriptionsNotSupported
            ),
            PacketType::UnsubAck => matches!(
                self,
                Success
                    | NoSubscriptionExisted
                    | UnspecifiedError
                    | ImplementationSpecificError
                    | NotAuthorized
                    | TopicFilterInvalid
                    | PacketIdentifierInUse
            ),
            PacketType::Auth => matches!(self, Success | ContinueAuthentication | ReAuthenticate),
            PacketType::Disconnect => !matches!(
                self,
                GrantedQoS1
                    | GrantedQoS2
                    | NoMatchingSubscribers
                    | NoSubscriptionExisted
                    | ContinueAuthentication
                    | ReAuthenticate
                    | UnsupportedProtocolVersion
                    | ClientIdentifierNotValid
                    | BadUserNameOrPassword
                    | ServerUnavailable
                    | Banned
                    | PacketIdentifierInUse
                    | PacketIdentifierNotFound
            ),
            _ => false,
        }
    }

    /// The MQTT 3.x CONNACK return code for this reason.
    ///
    /// MQTT 3.x has five refusal codes; every MQTT 5.0 refusal folds into the closest one (authentication
    /// failures into 4, authorization and bans into 5, everything else into "server unavailable").
    pub fn to_v3_connack(self) -> u8 {
        use ReasonCode::*;
        match self {
            Success => 0,
            UnsupportedProtocolVersion => 1,
            ClientIdentifierNotValid => 2,
            BadUserNameOrPassword | BadAuthenticationMethod => 4,
            NotAuthorized | Banned => 5,
            _ => 3,
        }
    }

    /// Parses an MQTT 3.x CONNACK return code (0 to 5).
    pub fn from_v3_connack(code: u8) -> Option<ReasonCode> {
        Some(match code {
            0 => ReasonCode::Success,
            1 => ReasonCode::UnsupportedProtocolVersion,
            2 => ReasonCode::ClientIdentifierNotValid,
            3 => ReasonCode::ServerUnavailable,
            4 => ReasonCode::BadUserNameOrPassword,
            5 => ReasonCode::NotAuthorized,
            _ => return None,
        })
    }

    /// The MQTT 3.1.1 SUBACK return code: the granted QoS, or 0x80 for any failure.
    pub fn to_v3_suback(self) -> u8 {
        match self {
            ReasonCode::Success => 0,
            ReasonCode::GrantedQoS1 => 1,
            ReasonCode::GrantedQoS2 => 2,
            _ => 0x80,
        }
    }

    /// Parses an MQTT 3.x SUBACK return code (0, 1, 2 or 0x80).
    pub fn from_v3_suback(code: u8) -> Option<ReasonCode> {
        Some(match code {
            0 => ReasonCode::Success,
            1 => ReasonCode::GrantedQoS1,
            2 => ReasonCode::GrantedQoS2,
            0x80 => ReasonCode::UnspecifiedError,
            _ => return None,
        })
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X} {}", self.as_u8(), self.description())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_defined_code_round_trips_and_unknown_codes_do_not_parse() {
        let mut defined = 0;
        for value in 0..=u8::MAX {
            match ReasonCode::from_u8(value) {
                Some(code) => {
                    defined += 1;
                    assert_eq!(code.as_u8(), value);
                }
                None => assert!(![0x00, 0x01, 0x02, 0x04, 0x10, 0x11, 0x18, 0x19].contains(&value)),
            }
        }
        // Table 2-6 of MQTT 5.0 defines 43 codes (0x00 counted once).
        assert_eq!(defined, 43);
    }

    #[test]
    fn per_packet_tables_match_the_spec_examples() {
        assert!(ReasonCode::NoMatchingSubscribers.allowed_in(PacketType::PubAck));
        assert!(!ReasonCode::NoMatchingSubscribers.allowed_in(PacketType::PubComp));
        assert!(ReasonCode::PacketIdentifierNotFound.allowed_in(PacketType::PubRel));
        assert!(ReasonCode::SessionTakenOver.allowed_in(PacketType::Disconnect));
        assert!(!ReasonCode::SessionTakenOver.allowed_in(PacketType::ConnAck));
        assert!(ReasonCode::Banned.allowed_in(PacketType::ConnAck));
        assert!(!ReasonCode::Banned.allowed_in(PacketType::Disconnect));
        assert!(ReasonCode::ReAuthenticate.allowed_in(PacketType::Auth));
        assert!(!ReasonCode::Success.allowed_in(PacketType::Publish));
    }

    #[test]
    fn v3_connack_codes_round_trip_and_v5_refusals_fold() {
        for code in 0..=5 {
            let reason = ReasonCode::from_v3_connack(code).expect("defined");
            assert_eq!(reason.to_v3_connack(), code);
        }
        assert_eq!(ReasonCode::from_v3_connack(6), None);
        assert_eq!(ReasonCode::Banned.to_v3_connack(), 5);
        assert_eq!(ReasonCode::BadAuthenticationMethod.to_v3_connack(), 4);
        assert_eq!(ReasonCode::ServerBusy.to_v3_connack(), 3);
        assert_eq!(ReasonCode::QuotaExceeded.to_v3_suback(), 0x80);
    }
}
