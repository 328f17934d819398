// Types of the Halley browser SDK (dist/halley.mjs; dist/halley.js defines the same names as globals).

/** What every callback receives, in the original comet-server shape. */
export interface CometMessage<T = any> {
  /** The message: parsed JSON when the text is JSON, else the text itself. */
  data: T;
  server_info: {
    /** Sender's user_id for messages sent from a browser (0: anonymous or from the backend). */
    user_id: number;
    pipe: string | undefined;
    event: string | undefined;
    /** true for messages replayed from the pipe's history (get_pipe_log / history). */
    history: boolean;
    /** Set on answers to a request (pipe_count, track_pipe_users, user_data). */
    marker: string | undefined;
    uuid: string | undefined;
  };
}

export type CometCallback<T = any> = (message: CometMessage<T>) => void;

/** Options of start()/restart(), in the original's names; the modern names are accepted too. */
export interface StartOptions {
  /** Your tenant's dev_id (required). */
  dev_id?: number | string;
  devId?: number | string;
  /** The user's id; with user_key, the connection is authorized as this user. */
  user_id?: number | string;
  userId?: number | string;
  /** The hash stored in users_auth for the user, or an HS256 JWT signed with your key + dev_id. */
  user_key?: string;
  userKey?: string;
  /** host[:port] of the Halley server (default: the host that served the page). A list picks one per user. */
  node?: string | string[];
  nodes?: string[];
  /** Force wss (true) or ws (false); default: wss when the page is https. */
  wss?: boolean;
  /** The 32-character connection uuid (default: kept in localStorage `comet_server_uuid`). */
  uuid?: string;
  /** false: this tab opens its own socket instead of sharing the browser's (default true). */
  share?: boolean;
  /** Reconnect delays: the n-th retry waits between ceiling/2 and ceiling, ceiling = min(maxMs, baseMs * 2^n). */
  backoff?: { baseMs?: number; maxMs?: number; factor?: number };
  /** false: never ask a Halley server for positions (`subscription2`) nor private-message ids (`msg_after`); default true. */
  recovery?: boolean;
  /** 0: errors only (default); 1: warnings; 2 and more: information. */
  logLevel?: number;
}

/** Delivery report of a web_pipe_send / publish. */
export interface DeliveryReport {
  message: string;
  number_messages: number;
}

export interface TrackedUser {
  user_id: number;
  uuid: string;
}

/** The comet-server JavaScript API 4.08 (what CometServer() returns). */
export declare class CometServerApi {
  constructor(opt?: StartOptions);
  readonly version: string;
  readonly sdkVersion: string;

  start(opt?: StartOptions, callBack?: () => void): boolean;
  stop(): void;
  restart(opt?: StartOptions): boolean;

  /**
   * "pipe", "pipe.event", "msg", "msg.event", "#pipe" (delivery reports), "" or a function (everything).
   * Returns the subscription id, or false for an invalid name (the reason is logged).
   */
  subscription(name: string, callback?: CometCallback): string | false;
  subscription(callback: CometCallback): string;
  unsubscription(subscriptionId: string): boolean;
  unsubscriptionAll(): boolean;

  web_pipe_send(pipe: string, event: string, msg: any): boolean | undefined;
  web_pipe_send(pipeDotEvent: string, msg: any): boolean | undefined;
  multi_web_pipe_send(pipe: string, event: string, msg: object, count?: number, interval?: number): boolean | undefined;

  get_pipe_log(pipe: string, callBack?: CometCallback): boolean;
  count_users_in_pipe(pipe: string, callBack: CometCallback<{ user_in_pipe: number }>): boolean;
  getTrackPipeUsers(pipe: string, callBack: CometCallback<TrackedUser[]>): boolean | undefined;
  getUserData(user_id: number | string, callBack: CometCallback<{ user_id: number; user_data: string }>): boolean | undefined;
  sendStatistics(plugin_name: string, plugin_version: string, plugin_data?: any): boolean;

  onAuthSuccess(callback: () => void): void;
  onAuthFalill(callback: () => void): void;
  onAuthFail(callback: () => void): void;
  isAuthorized(): boolean | undefined;

  /**
   * "msg" (Halley): called with (false, null) when the server could not replay the private messages missed
   * since the last one processed (unknown or too old id, a server restart); nothing is called when it could.
   */
  onRecovery(pipe: "msg", fn: (recovered: false, position: null) => void): () => void;
  /** Called after every (re)subscribe of `pipe` (Halley): recovered false means messages were lost. */
  onRecovery(pipe: string, fn: (recovered: boolean, position: Position) => void): () => void;
  /** The last processed position of `pipe`, or null. */
  getPosition(pipe: string): Position | null;

  isMaster(): boolean | undefined;
  isConnected(): boolean;
  getUserId(): number | string | undefined;
  getUserKey(): string | undefined;
  getRealUserKey(): string | undefined;
  setRealUserKey(key: string): boolean;
  getDevId(): number | string | undefined;
  getUUID(): string;
  getTabUUID(): string;
  getCustomString(): string;
  UseWebSocket(use?: boolean): boolean;
  UseWss(use?: boolean): boolean;
  isUseWss(): boolean;
  getLogLevel(): number;
  setLogLevel(level: number): void;
}

/** Where a page stands in a pipe's stream: offsets count the pipe's messages within one epoch. */
export interface Position {
  epoch: string;
  offset: number;
}

export interface RequestOptions {
  /** Reject when the server has not answered within this time (default 10000). */
  timeoutMs?: number;
}

/** The modern client: one object per connection, promises, listeners that return their remover. */
export declare class Halley {
  constructor(options: StartOptions);
  /** Same name forms as subscription(); throws on an invalid name. Returns the unsubscribe function. */
  on<T = any>(name: string, callback: CometCallback<T>): () => void;
  on<T = any>(callback: CometCallback<T>): () => void;
  publish(pipe: string, event: string, data: any, options?: RequestOptions): Promise<DeliveryReport>;
  publish(pipeDotEvent: string, data: any): Promise<DeliveryReport>;
  countUsers(pipe: string, options?: RequestOptions): Promise<number>;
  trackUsers(pipe: string, options?: RequestOptions): Promise<TrackedUser[]>;
  userData(userId: number | string, options?: RequestOptions): Promise<string>;
  history<T = any>(pipe: string, callback: CometCallback<T>): () => void;
  onAuth(callback: (authorized: boolean) => void): () => void;
  onStatus(callback: (connected: boolean) => void): () => void;
  /** "msg": (false, null) when missed private messages could not be replayed (see CometServerApi). */
  onRecovery(pipe: "msg", fn: (recovered: false, position: null) => void): () => void;
  onRecovery(pipe: string, fn: (recovered: boolean, position: Position) => void): () => void;
  getPosition(pipe: string): Position | null;
  readonly authorized: boolean | undefined;
  readonly connected: boolean;
  readonly leader: boolean;
  readonly uuid: string;
  close(): void;
}

/** The page-wide instance (the original's `cometApi`). */
export declare const cometApi: CometServerApi;
/** The original's factory: always returns cometApi. */
export declare function CometServer(): CometServerApi;
/** The original's constructor names: `new cometServerApi()` makes a new, independent instance. */
export declare const cometServerApi: {
  new (opt?: StartOptions): CometServerApi;
  (opt?: StartOptions): CometServerApi;
};
export declare const _cometServerApi: typeof cometServerApi;
export declare const API_VERSION: string;
export declare const SDK_VERSION: string;
