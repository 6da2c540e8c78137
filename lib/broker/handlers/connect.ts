/** CONNECT: client identifier rules, session start or resume, takeover, keep alive, will, CONNACK. */
import { MAX_PACKET_SIZE, PacketType } from "../../codec/constants";
import { ConnackReturnCode, ReasonCode } from "../../codec/reason-codes";
import { decodeUtf8 } from "../../codec/reader";
import type { ConnectPacket } from "../../codec/packets/connect";
import type { ConnackProperties, PublishProperties } from "../../codec/properties";
import { ConnState, type Connection } from "../connection";
import { persist } from "../message";
import { Session } from "../session";

/** 3.1.1 return code for a v5 refusal reason. */
function v4Code(reason: number): number {
  switch (reason) {
    case ReasonCode.ClientIdentifierNotValid: return ConnackReturnCode.IdentifierRejected;
    case ReasonCode.BadUserNameOrPassword: return ConnackReturnCode.BadUserNameOrPassword;
    case ReasonCode.NotAuthorized: return ConnackReturnCode.NotAuthorized;
    default: return ConnackReturnCode.ServerUnavailable;
  }
}

/** Refuses a CONNECT with CONNACK and closes [MQTT-3.2.2-7]. */
function refuse(conn: Connection, reason: number, message: string, serverReference?: string): void {
  const v5 = conn.version === 5;
  const properties: ConnackProperties = {};
  if (v5) {
    properties.reasonString = message;
    if (serverReference !== undefined) properties.serverReference = serverReference; // section 4.11
  }
  conn.writeWithReason({
    type: PacketType.CONNACK,
    sessionPresent: false, // [MQTT-3.2.2-6]
    reasonCode: v5 ? reason : v4Code(reason),
    properties,
  });
  conn.close(null, message);
}

function randomClientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return "auto-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
}

/** Handles the CONNECT that opens a connection. */
export function handleConnect(conn: Connection, p: ConnectPacket): void {
  const broker = conn.broker;
  const o = broker.options;
  conn.version = p.protocolVersion;
  const v5 = p.protocolVersion === 5;
  const props = p.properties;
  conn.clientMaxPacketSize = props.maximumPacketSize ?? MAX_PACKET_SIZE; // a refusal must respect it too [MQTT-3.2.2-19]

  if (o.redirect !== null) {
    const { reference, permanent } = o.redirect;
    return refuse(conn, permanent ? ReasonCode.ServerMoved : ReasonCode.UseAnotherServer, `use the server at ${reference}`, reference);
  }
  if (broker.clients.size >= o.maxConnections) return refuse(conn, ReasonCode.QuotaExceeded, "too many connections");
  if (v5 && props.authenticationMethod !== undefined) {
    return refuse(conn, ReasonCode.BadAuthenticationMethod, `authentication method '${props.authenticationMethod}' is not supported`);
  }
  const denied = broker.authenticate(p.username, p.password); // [MQTT-3.1.4-2]
  if (denied !== 0) broker.counters.authFailures++;
  if (denied === ReasonCode.NotAuthorized) return refuse(conn, denied, "not authorized: this broker needs a user name and password");
  if (denied !== 0) return refuse(conn, denied, "bad user name or password");
  let clientId = p.clientId;
  let assigned = false;
  if (clientId === "") {
    if (!v5 && !p.cleanStart) {
      return refuse(conn, ReasonCode.ClientIdentifierNotValid, "an empty client identifier needs clean session"); // 3.1.1 [MQTT-3.1.3-8]
    }
    clientId = randomClientId(); // [MQTT-3.1.3-6]
    assigned = true;
  }
  if (p.will !== null) {
    const willTopic = p.will.topic as Uint8Array;
    if (!broker.mayWrite(p.username, clientId, decodeUtf8(willTopic, 0, willTopic.length, "the will topic"))) {
      return refuse(conn, ReasonCode.NotAuthorized, "not authorized to publish the will topic");
    }
    if (p.will.qos > o.maximumQoS) return refuse(conn, ReasonCode.QoSNotSupported, `will QoS ${p.will.qos} exceeds the maximum QoS ${o.maximumQoS}`); // [MQTT-3.2.2-12]
    if (p.will.retain && !o.retainAvailable) return refuse(conn, ReasonCode.RetainNotSupported, "retained wills are not supported"); // [MQTT-3.2.2-13]
  }

  const cluster = broker.cluster;
  if (cluster === null) return finishConnect(conn, p, clientId, assigned);
  // in a cluster the session may be held by another node: it is claimed first, and the packets
  // after CONNECT wait meanwhile
  conn.holdBack("claim");
  cluster.claimSession(clientId, p.cleanStart).then(
    (handed) => {
      if (handed !== null) broker.adoptSession(handed);
      if (conn.state === ConnState.Closed) return broker.claimAbandoned(clientId); // the client went meanwhile
      finishConnect(conn, p, clientId, assigned);
      if (conn.releaseHold("claim")) conn.resume();
      broker.flushAll();
    },
    (e: unknown) => {
      broker.log("error", `cluster: cannot claim the session of '${clientId}': ${(e as Error).message}`);
      if (conn.state !== ConnState.Closed) refuse(conn, ReasonCode.ServerUnavailable, "the cluster cannot take the session now");
      broker.flushAll();
    },
  );
}

/** Takes over or starts the session, then sends CONNACK. */
function finishConnect(conn: Connection, p: ConnectPacket, clientId: string, assigned: boolean): void {
  const broker = conn.broker;
  const o = broker.options;
  const v5 = p.protocolVersion === 5;
  const props = p.properties;
  const old = broker.clients.get(clientId);
  if (old !== undefined) old.close(ReasonCode.SessionTakenOver, "another connection took over the session"); // [MQTT-3.1.4-3]

  let session = broker.sessions.get(clientId);
  let present = false;
  if (session !== undefined && p.cleanStart) {
    broker.endSession(session, true); // [MQTT-3.1.2-4]
    session = undefined;
  } else if (session !== undefined) {
    present = true; // [MQTT-3.1.2-5]
    broker.resumeSession(session);
  }
  if (session === undefined) {
    session = new Session(clientId);
    broker.sessions.set(clientId, session);
  }
  session.protocolVersion = p.protocolVersion;
  session.username = p.username;
  broker.sessionOwnerChanged();
  session.expiryInterval = v5 ? (props.sessionExpiryInterval ?? 0) : p.cleanStart ? 0 : 0xffffffff; // [MQTT-3.1.2-23]
  session.connected = true;
  conn.session = session;
  conn.state = ConnState.Connected;
  broker.clients.set(clientId, conn);
  broker.sessionConnected(session); // with a persistence file: kept (or no longer kept) before CONNACK leaves

  let keepAlive = p.keepAlive;
  let serverKeepAlive: number | undefined;
  if (v5 && o.maxKeepAlive > 0 && (keepAlive === 0 || keepAlive > o.maxKeepAlive)) {
    keepAlive = serverKeepAlive = o.maxKeepAlive; // [MQTT-3.2.2-21]
  }
  conn.keepAliveMs = keepAlive * 1000;
  conn.sendWindow = Math.min(props.receiveMaximum ?? 65535, o.maxInflight); // [MQTT-3.3.4-9]
  conn.clientTopicAliasMax = v5 ? (props.topicAliasMaximum ?? 0) : 0; // aliases we may assign [MQTT-3.3.2-11]

  if (p.will !== null) {
    const w = p.will;
    const { willDelayInterval, ...publishProps } = w.properties;
    const topicBytes = w.topic as Uint8Array;
    conn.will = {
      message: persist({
        topic: decodeUtf8(topicBytes, 0, topicBytes.length, "the will topic"),
        topicBytes,
        payload: w.payload,
        qos: w.qos,
        retain: w.retain,
        properties: publishProps as PublishProperties,
        expiresAt: 0,
        persisted: false,
        ownTopic: false,
        forms: null,
        formsShared: true,
      }),
      delayMs: (willDelayInterval ?? 0) * 1000,
    };
  }

  const ack: ConnackProperties = {};
  if (v5) {
    if (assigned) ack.assignedClientIdentifier = clientId; // [MQTT-3.2.2-16]
    if (serverKeepAlive !== undefined) ack.serverKeepAlive = serverKeepAlive;
    if (o.receiveMaximum < 65535) ack.receiveMaximum = o.receiveMaximum;
    if (o.maximumQoS < 2) ack.maximumQoS = o.maximumQoS;
    if (!o.retainAvailable) ack.retainAvailable = 0;
    if (o.maxPacketSize < MAX_PACKET_SIZE) ack.maximumPacketSize = o.maxPacketSize;
    if (o.topicAliasMaximum > 0) ack.topicAliasMaximum = o.topicAliasMaximum;
    if (!o.wildcardSubscriptionAvailable) ack.wildcardSubscriptionAvailable = 0;
    if (!o.subscriptionIdentifierAvailable) ack.subscriptionIdentifierAvailable = 0;
    if (!o.sharedSubscriptionAvailable) ack.sharedSubscriptionAvailable = 0;
    if (props.requestResponseInformation === 1 && o.responseInformation !== "") ack.responseInformation = o.responseInformation; // section 3.2.2.3.15
  }
  conn.writePacket({ type: PacketType.CONNACK, sessionPresent: present, reasonCode: 0, properties: ack });
  if (broker.logs("info")) broker.log("info", `connected ${conn.describe()} v${v5 ? "5" : "3.1.1"}${present ? ", session resumed" : ""}`);
  if (present) broker.outbox.redeliver(conn, session);
  broker.cluster?.sessionConnected(session, conn.will);
}
